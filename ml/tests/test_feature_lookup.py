import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import Tables, make_bookings, run_job_subprocess, train_spec, write_table

from hotel_mlops.feature_lookup import lead_time_days

LOOKED_UP = ["repeated_guest", "no_of_previous_cancellations", "no_of_previous_bookings_not_canceled"]


def feature_table(path, *frames) -> str:
    rows = [frame[["booking_id", *LOOKED_UP]] for frame in frames]
    table = pa.Table.from_pandas(
        rows[0] if len(rows) == 1 else rows[0]._append(rows[1:]), preserve_index=False
    )
    pq.write_table(table, path)
    return str(path)


def lookup_spec(tables: Tables, output_dir, features_path: str) -> dict:
    return train_spec(
        tables,
        output_dir,
        key_column="booking_id",
        feature_lookup={"table_path": features_path, "key": "booking_id", "features": LOOKED_UP},
    )


@pytest.fixture(scope="module")
def stripped(tmp_path_factory) -> tuple[Tables, str]:
    """A train table without the looked-up features and lead_time, their feature table, and the test table."""
    folder = tmp_path_factory.mktemp("lookup")
    train = make_bookings(400, seed=1)
    stripped_train = write_table(train.drop(columns=[*LOOKED_UP, "lead_time"]), folder / "train.parquet")
    test = write_table(make_bookings(150, seed=2, id_offset=1000), folder / "test.parquet")
    return Tables(stripped_train, test), feature_table(folder / "hotel_features.parquet", train)


def test_lead_time_function_matches_the_stored_lead_time():
    bookings = make_bookings(50, seed=3)

    computed = lead_time_days(bookings["date_of_arrival"], bookings["date_of_booking"])

    assert computed.tolist() == bookings["lead_time"].tolist()


def test_lookup_rebuilds_the_training_set_exactly(stripped, trained, tmp_path):
    tables, features = stripped

    run = run_job_subprocess("train", lookup_spec(tables, tmp_path / "output", features), tmp_path)

    assert run.exit_code == 0, run.stderr
    # Looked-up features and the recomputed lead time equal the full table's, so the model is the same.
    assert run.result["metrics"] == trained.run.result["metrics"]


def test_missing_features_exit_2_with_ids(stripped, tmp_path):
    tables, _ = stripped
    partial = feature_table(tmp_path / "partial.parquet", make_bookings(400, seed=1).head(390))

    run = run_job_subprocess("train", lookup_spec(tables, tmp_path / "output", partial), tmp_path)

    assert run.exit_code == 2
    assert "10 rows have no features" in run.log_lines[-1]["msg"]
    assert "INN00390" in run.log_lines[-1]["msg"]


def test_repeated_feature_key_exits_2(stripped, tmp_path):
    tables, _ = stripped
    bookings = make_bookings(400, seed=1)
    repeated = feature_table(tmp_path / "repeated.parquet", bookings, bookings.head(2))

    run = run_job_subprocess("train", lookup_spec(tables, tmp_path / "output", repeated), tmp_path)

    assert run.exit_code == 2
    assert "primary key booking_id repeats 2 times" in run.log_lines[-1]["msg"]
