import pytest
from conftest import CATEGORICAL_INPUTS, Tables, make_bookings, run_job_subprocess, train_spec, write_table

from hotel_mlops.data import is_test_id

# The same list is checked against the ingestion's SQL rule in test/unit/split-parity.test.ts.
TEST_SIDE = [
    "INN00002",
    "INN00022",
    "INN00027",
    "INN00031",
    "INN00032",
    "INN00035",
    "INN00037",
    "INN00042",
    "INN00043",
    "INN00046",
    "INN00056",
    "INN00057",
]


def test_split_rule_matches_the_ingestion():
    ids = [f"INN{index:05d}" for index in range(1, 61)]

    assert [booking for booking in ids if is_test_id(booking, 0.2)] == TEST_SIDE


@pytest.fixture(scope="module")
def extra(tmp_path_factory):
    """200 bookings of other segments, the rows ingestion puts in extra_set."""
    bookings = make_bookings(200, seed=11, id_offset=5000)
    bookings["market_segment_type"] = ["Offline", "Corporate"] * 100
    return bookings, write_table(bookings, tmp_path_factory.mktemp("extra") / "extra.parquet")


def all_rows_spec(tables: Tables, output_dir, extra_path) -> dict:
    return train_spec(
        tables,
        output_dir,
        key_column="booking_id",
        categorical_inputs=[*CATEGORICAL_INPUTS, "market_segment_type"],
        extra_rows={"path": str(extra_path), "key": "booking_id", "test_fraction": 0.2},
    )


def test_all_rows_splits_extra_bookings(tables, extra, tmp_path):
    bookings, path = extra
    expected_test = sum(is_test_id(booking, 0.2) for booking in bookings["booking_id"])

    run = run_job_subprocess("train", all_rows_spec(tables, tmp_path / "output", path), tmp_path)

    assert run.exit_code == 0, run.stderr
    assert run.result["train_rows"] == 400 + 200 - expected_test
    assert run.result["test_rows"] == 150 + expected_test
    assert 0 < expected_test < 200


def test_score_uses_the_same_rows(tables, extra, store, tmp_path):
    _, path = extra
    trained = run_job_subprocess("train", all_rows_spec(tables, tmp_path / "output", path), tmp_path)
    assert trained.exit_code == 0, trained.stderr
    spec = {
        "tracking_uri": store.uri,
        "model_uri": trained.result["model_dir"],
        "test_path": str(tables.test_path),
        "target": "booking_status",
        "numeric_inputs": [],
        "categorical_inputs": [],
        "key_column": "booking_id",
        "extra_rows": {"path": str(path), "key": "booking_id", "test_fraction": 0.2},
    }

    scored = run_job_subprocess("score", {**spec, "numeric_inputs": ["lead_time"]}, tmp_path)

    assert scored.exit_code == 0, scored.stderr
    assert scored.result["rows"] == trained.result["test_rows"]
    assert scored.result["metrics"] == pytest.approx(trained.result["metrics"])


def test_bad_test_fraction_exits_2(tables, extra, tmp_path):
    _, path = extra
    spec = all_rows_spec(tables, tmp_path / "output", path)
    spec["extra_rows"]["test_fraction"] = 1.5

    run = run_job_subprocess("train", spec, tmp_path)

    assert run.exit_code == 2
    assert "extra_rows.test_fraction must be a number between 0 and 1, got 1.5" in run.log_lines[-1]["msg"]
