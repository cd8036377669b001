import pytest
from conftest import (
    CATEGORICAL_INPUTS,
    NUMERIC_INPUTS,
    Tables,
    make_bookings,
    run_job_subprocess,
    train_spec,
    write_table,
)
from mlflow.tracking import MlflowClient

MODEL_NAME = "mlops_dev.acikgozm.hotel_reservations_model_basic"


@pytest.fixture(scope="module")
def registered(logged, store) -> str:
    """Registers the logged model as a version and returns its models:/ URI."""
    result = logged.run.result
    client = MlflowClient(store.uri)
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(
        MODEL_NAME, result["model_source"], run_id=result["run_id"], model_id=result["model_id"]
    )
    return f"models:/{MODEL_NAME}/{version.version}"


def score_spec(store, uri: str, test_path, **overrides) -> dict:
    spec = {
        "tracking_uri": store.uri,
        "model_uri": uri,
        "test_path": str(test_path),
        "target": "booking_status",
        "numeric_inputs": NUMERIC_INPUTS,
        "categorical_inputs": CATEGORICAL_INPUTS,
        "key_column": "booking_id",
    }
    spec.update(overrides)
    return spec


def test_score_matches_training_metrics_on_same_table(registered, store, tables: Tables, trained, tmp_path):
    run = run_job_subprocess("score", score_spec(store, registered, tables.test_path), tmp_path)

    assert run.exit_code == 0, run.stderr
    assert run.result["rows"] == 150
    assert run.result["metrics"] == pytest.approx(trained.run.result["metrics"])


def test_score_on_another_table_differs(registered, store, tmp_path):
    other = write_table(make_bookings(200, seed=9, id_offset=5000), tmp_path / "other-test.parquet")

    run = run_job_subprocess("score", score_spec(store, registered, other), tmp_path)

    assert run.exit_code == 0, run.stderr
    assert run.result["rows"] == 200
    assert 0.5 < run.result["metrics"]["roc_auc"] <= 1.0


def test_missing_model_version_exits_2(registered, store, tables: Tables, tmp_path):
    run = run_job_subprocess(
        "score", score_spec(store, f"models:/{MODEL_NAME}/99", tables.test_path), tmp_path
    )

    assert run.exit_code == 2
    assert f"models:/{MODEL_NAME}/99" in run.log_lines[-1]["msg"]


def test_score_reads_the_columns_of_the_model_signature(store, tables: Tables, tmp_path):
    # A champion trained on another feature set than the scoring spec names: its signature decides.
    extended = [*NUMERIC_INPUTS, "arrival_year", "arrival_month", "arrival_date"]
    spec = train_spec(
        tables, tmp_path / "extended", numeric_inputs=extended, derived_inputs=["arrival_weekday"]
    )
    trained = run_job_subprocess("train", spec, tmp_path)
    assert trained.exit_code == 0, trained.stderr

    run = run_job_subprocess(
        "score", score_spec(store, trained.result["model_dir"], tables.test_path), tmp_path
    )

    assert run.exit_code == 0, run.stderr
    assert run.result["metrics"] == pytest.approx(trained.result["metrics"])
