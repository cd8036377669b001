import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from conftest import TrackingStore, log_spec, run_job_in_process, run_job_subprocess
from mlflow.entities import LoggedModelStatus, RunStatus, ViewType
from mlflow.tracking import MlflowClient

from hotel_mlops.joblog import JobLogger
from hotel_mlops.report import CLASSIFICATION_REPORT_FILE, PLOT_FILES
from hotel_mlops.tracking import IDEMPOTENCY_TAG, get_or_create_experiment


def all_runs(store: TrackingStore, experiment_id: str):
    return MlflowClient(store.uri).search_runs([experiment_id], run_view_type=ViewType.ALL)


def test_log_job_result_names_run_and_model(logged):
    assert logged.run.exit_code == 0, logged.run.stderr
    result = logged.run.result

    assert result["reused"] is False
    assert result["model_id"].startswith("m-")
    assert result["model_uri"] == f"models:/{result['model_id']}"
    assert Path(result["model_source"], "MLmodel").is_file()
    assert result["artifact_uri"].endswith(f"{result['run_id']}/artifacts")
    assert logged.run.log_lines[-1]["msg"] == "Job finished"


def test_log_job_records_params_metrics_tags(logged, store):
    result = logged.run.result
    run = MlflowClient(store.uri).get_run(result["run_id"])

    assert run.info.status == "FINISHED"
    assert run.info.run_name == "basic-training"
    assert run.info.experiment_id == result["experiment_id"]
    assert run.data.params["model_type"] == "LGBMClassifier with preprocessing"
    assert run.data.params["random_state"] == "42"
    assert run.data.params["learning_rate"] == "0.1"
    assert run.data.metrics == logged.spec["metrics"]
    assert run.data.tags[IDEMPOTENCY_TAG] == "wf-1/basic"
    for key, value in logged.spec["tags"].items():
        assert run.data.tags[key] == value


def test_log_job_records_dataset_inputs(logged, store):
    run = MlflowClient(store.uri).get_run(logged.run.result["run_id"])
    inputs = {entry.dataset.name: entry for entry in run.inputs.dataset_inputs}

    assert sorted(inputs) == ["mlops_dev.acikgozm.test_set", "mlops_dev.acikgozm.train_set"]
    train = inputs["mlops_dev.acikgozm.train_set"]
    train_tags = {tag.key: tag.value for tag in train.tags}
    assert train_tags["mlflow.data.context"] == "training"
    assert train_tags["table_version"] == "3"
    assert train.dataset.source_type == "catalog_table"
    assert json.loads(train.dataset.source)["table"] == "mlops_dev.acikgozm.train_set"
    assert json.loads(train.dataset.source)["version"] == 3
    assert train.dataset.digest == ("a1" * 32)[:36]
    assert train_tags["digest"] == "a1" * 32
    test_tags = {tag.key: tag.value for tag in inputs["mlops_dev.acikgozm.test_set"].tags}
    assert test_tags["mlflow.data.context"] == "testing"
    assert "digest" not in test_tags


def test_log_job_links_logged_model(logged, store):
    result = logged.run.result
    client = MlflowClient(store.uri)
    model = client.get_logged_model(result["model_id"])
    run = client.get_run(result["run_id"])

    assert model.name == "lightgbm-pipeline-model"
    assert model.status == LoggedModelStatus.READY
    assert model.source_run_id == result["run_id"]
    assert model.artifact_location == result["model_source"]
    assert [output.model_id for output in run.outputs.model_outputs] == [result["model_id"]]
    assert {metric.key: metric.value for metric in model.metrics} == logged.spec["metrics"]


def test_logged_model_predicts_json_records(logged, store):
    mlflow.set_tracking_uri(store.uri)
    model = mlflow.pyfunc.load_model(logged.run.result["model_uri"])
    # Records as a serving request carries them: JSON integers for every number, even the price.
    records = json.loads(
        json.dumps(
            [
                {
                    "no_of_adults": 2,
                    "no_of_children": 0,
                    "no_of_weekend_nights": 1,
                    "no_of_week_nights": 2,
                    "required_car_parking_space": 0,
                    "lead_time": 250,
                    "repeated_guest": 0,
                    "no_of_previous_cancellations": 0,
                    "no_of_previous_bookings_not_canceled": 0,
                    "avg_price_per_room": 180,
                    "no_of_special_requests": 0,
                    "type_of_meal_plan": "Meal Plan 1",
                    "room_type_reserved": "Room_Type 1",
                },
                {
                    "no_of_adults": 1,
                    "no_of_children": 1,
                    "no_of_weekend_nights": 0,
                    "no_of_week_nights": 1,
                    "required_car_parking_space": 1,
                    "lead_time": 3,
                    "repeated_guest": 1,
                    "no_of_previous_cancellations": 0,
                    "no_of_previous_bookings_not_canceled": 2,
                    "avg_price_per_room": 75.5,
                    "no_of_special_requests": 3,
                    "type_of_meal_plan": "Not Selected",
                    "room_type_reserved": "Room_Type 7",
                },
            ]
        )
    )

    predictions = model.predict(pd.DataFrame(records))

    assert len(predictions) == 2
    assert set(int(value) for value in predictions) <= {0, 1}
    assert int(predictions[0]) == 1
    assert int(predictions[1]) == 0


def test_same_key_reuses_run(logged, store, tmp_path):
    exit_code, result = run_job_in_process("log", logged.spec, tmp_path)

    assert exit_code == 0
    assert result["reused"] is True
    assert result["run_id"] == logged.run.result["run_id"]
    assert result["model_id"] == logged.run.result["model_id"]
    assert len(all_runs(store, result["experiment_id"])) == 1


def test_crashed_run_is_resumed(store, trained, tables, tmp_path):
    spec = log_spec(store, trained, tables, "/Shared/resume", "wf-2/basic")
    client = MlflowClient(store.uri)
    experiment_id = client.create_experiment("/Shared/resume", artifact_location=spec["artifact_location"])
    crashed = client.create_run(
        experiment_id, run_name="basic-training", tags={IDEMPOTENCY_TAG: "wf-2/basic"}
    )
    client.log_param(crashed.info.run_id, "learning_rate", "0.1")

    exit_code, result = run_job_in_process("log", spec, tmp_path)

    assert exit_code == 0
    assert result["reused"] is False
    assert result["run_id"] == crashed.info.run_id
    run = client.get_run(crashed.info.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["n_estimators"] == "40"
    assert len(run.inputs.dataset_inputs) == 2
    assert len(all_runs(store, experiment_id)) == 1


def test_conflicting_param_exits_2(store, trained, tables, tmp_path, capsys):
    spec = log_spec(store, trained, tables, "/Shared/conflict", "wf-3/basic")
    client = MlflowClient(store.uri)
    experiment_id = client.create_experiment("/Shared/conflict", artifact_location=spec["artifact_location"])
    crashed = client.create_run(experiment_id, tags={IDEMPOTENCY_TAG: "wf-3/basic"})
    client.log_param(crashed.info.run_id, "learning_rate", "0.5")

    exit_code, result = run_job_in_process("log", spec, tmp_path)

    assert exit_code == 2
    assert result is None
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert final["error_type"] == "InvalidInput"
    assert "learning_rate is '0.5' in the run but '0.1' in the spec" in final["msg"]
    assert client.get_run(crashed.info.run_id).info.status == RunStatus.to_string(RunStatus.FAILED)


def test_deleted_run_is_ignored(store, trained, tables, tmp_path):
    spec = log_spec(store, trained, tables, "/Shared/deleted", "wf-4/basic")
    client = MlflowClient(store.uri)
    experiment_id = client.create_experiment("/Shared/deleted", artifact_location=spec["artifact_location"])
    deleted = client.create_run(experiment_id, tags={IDEMPOTENCY_TAG: "wf-4/basic"})
    client.log_param(deleted.info.run_id, "learning_rate", "0.5")
    client.delete_run(deleted.info.run_id)

    exit_code, result = run_job_in_process("log", spec, tmp_path)

    assert exit_code == 0
    assert result["run_id"] != deleted.info.run_id
    assert result["reused"] is False


def test_missing_model_dir_exits_2(store, trained, tables, tmp_path, capsys):
    spec = log_spec(
        store, trained, tables, "/Shared/missing", "wf-5/basic", model_dir=str(tmp_path / "absent")
    )

    exit_code, _ = run_job_in_process("log", spec, tmp_path)

    assert exit_code == 2
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert f"model_dir {tmp_path / 'absent'} contains no MLflow model" in final["msg"]


class LateClient(MlflowClient):
    """Client that misses an experiment on the first lookup, as if another job created it meanwhile."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.lookups = 0

    def get_experiment_by_name(self, name):
        self.lookups += 1
        return None if self.lookups == 1 else super().get_experiment_by_name(name)


def test_experiment_created_concurrently_is_reused(store):
    client = MlflowClient(store.uri)
    experiment_id = client.create_experiment("/Shared/race", artifact_location=str(store.folder / "race"))

    found = get_or_create_experiment(LateClient(store.uri), "/Shared/race", None, JobLogger())

    assert found == experiment_id


def test_deleted_experiment_exits_with_fix(store):
    from hotel_mlops.errors import InvalidInputError

    client = MlflowClient(store.uri)
    experiment_id = client.create_experiment("/Shared/gone", artifact_location=str(store.folder / "gone"))
    client.delete_experiment(experiment_id)

    with pytest.raises(InvalidInputError, match="is deleted. Restore it"):
        get_or_create_experiment(client, "/Shared/gone", None, JobLogger())


def test_log_job_writes_json_artifacts(logged, store):
    client = MlflowClient(store.uri)
    path = client.download_artifacts(logged.run.result["run_id"], "data_quality_report.json")
    assert json.loads(Path(path).read_text()) == {"rowsIn": 600, "arrivalDatesNormalised": 2}


def test_log_job_attaches_evaluation_files(logged, store):
    client = MlflowClient(store.uri)
    listed = {item.path for item in client.list_artifacts(logged.run.result["run_id"], "evaluation")}

    assert listed == {f"evaluation/{name}" for name in (CLASSIFICATION_REPORT_FILE, *PLOT_FILES)}


def test_bad_json_artifact_name_exits_2(store, trained, tables, tmp_path):
    spec = log_spec(
        store,
        trained,
        tables,
        "/Shared/hotel-reservations-basic",
        "wf-bad-artifact/basic",
        json_artifacts={"../escape.json": {}},
    )
    outcome = run_job_subprocess("log", spec, tmp_path)
    assert outcome.exit_code == 2
    assert "json_artifacts key '../escape.json'" in outcome.log_lines[-1]["msg"]
