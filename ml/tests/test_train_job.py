import json
import os
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import (
    TABLE_SCHEMA,
    TEST_PARAMETERS,
    Tables,
    make_bookings,
    run_job_in_process,
    run_job_subprocess,
    train_spec,
    write_table,
)

import hotel_mlops.fitting
from hotel_mlops.evaluate import METRIC_NAMES
from hotel_mlops.joblog import JobLogger
from hotel_mlops.report import CLASSIFICATION_REPORT_FILE, PLOT_FILES
from hotel_mlops.spec import parse_train_spec
from hotel_mlops.train import MARKER_FILE, run_train


def test_train_job_writes_model_and_metrics(trained):
    run = trained.run
    assert run.exit_code == 0, run.stderr
    result = run.result
    output_dir = trained.spec["output_dir"]

    assert result["output_dir"] == output_dir
    assert result["model_dir"] == os.path.join(output_dir, "model")
    assert os.path.isfile(os.path.join(result["model_dir"], "MLmodel"))
    assert set(result["metrics"]) == set(METRIC_NAMES)
    assert 0.5 < result["metrics"]["roc_auc"] <= 1.0
    with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as handle:
        assert json.load(handle) == result["metrics"]
    assert result["train_rows"] == 400
    assert result["test_rows"] == 150
    assert result["reused"] is False
    assert len(result["spec_hash"]) == 64


def test_train_job_writes_evaluation_files(trained):
    folder = Path(trained.run.result["evaluation_dir"])

    for name in PLOT_FILES:
        assert (folder / name).read_bytes().startswith(b"\x89PNG"), name
    report = json.loads((folder / CLASSIFICATION_REPORT_FILE).read_text())
    assert set(report) >= {"not canceled (0)", "canceled (1)", "accuracy", "macro avg"}
    assert report["accuracy"] == pytest.approx(trained.run.result["metrics"]["accuracy"])
    assert report["canceled (1)"]["recall"] == pytest.approx(trained.run.result["metrics"]["recall"])


def test_train_result_lists_lightgbm_params(trained):
    params = trained.run.result["params"]

    assert params["model_type"] == "LGBMClassifier with preprocessing"
    assert params["random_state"] == 42
    assert params["learning_rate"] == 0.1
    assert params["n_estimators"] == 40
    assert params["deterministic"] is True


def test_train_job_logs_json_lines(trained):
    lines = trained.run.log_lines
    messages = [line["msg"] for line in lines]

    assert all(line["level"] in ("info", "warning") for line in lines), lines
    assert messages[0] == "Job started"
    assert messages[-1] == "Job finished"
    loaded = next(line for line in lines if line["msg"] == "Loaded and validated train and test tables")
    assert loaded["train_rows"] == 400


def test_signature_uses_int64_and_float64(trained):
    from mlflow.models import Model

    signature = Model.load(trained.run.result["model_dir"]).signature
    types = {column.name: column.type.name for column in signature.inputs.inputs}

    assert list(types) == trained.spec["numeric_inputs"] + trained.spec["categorical_inputs"]
    assert types["lead_time"] == "long"
    assert types["avg_price_per_room"] == "double"
    assert types["room_type_reserved"] == "string"


def test_retrain_gives_identical_metrics(trained, tables, tmp_path):
    spec = parse_train_spec(train_spec(tables, tmp_path / "again"))

    result = run_train(spec, JobLogger())

    assert result["reused"] is False
    assert result["metrics"] == trained.run.result["metrics"]
    assert result["spec_hash"] == trained.run.result["spec_hash"]


def test_same_spec_reuses_output_without_fit(trained, monkeypatch, tmp_path):
    def fail_fit(*args, **kwargs):
        raise AssertionError("the job fitted again although the output matches the spec")

    monkeypatch.setattr(hotel_mlops.fitting, "fit_and_evaluate", fail_fit)
    model_file = os.path.join(trained.spec["output_dir"], "model", "MLmodel")
    modified_before = os.stat(model_file).st_mtime_ns

    exit_code, result = run_job_in_process("train", trained.spec, tmp_path)

    assert exit_code == 0
    assert result["reused"] is True
    assert result["metrics"] == trained.run.result["metrics"]
    assert result["spec_hash"] == trained.run.result["spec_hash"]
    assert os.stat(model_file).st_mtime_ns == modified_before


def test_changed_seed_replaces_output(tables, tmp_path):
    output_dir = tmp_path / "output"
    first = run_train(parse_train_spec(train_spec(tables, output_dir)), JobLogger())

    second = run_train(parse_train_spec(train_spec(tables, output_dir, seed=7)), JobLogger())

    assert second["reused"] is False
    assert second["spec_hash"] != first["spec_hash"]
    with open(output_dir / MARKER_FILE, encoding="utf-8") as handle:
        assert json.load(handle)["spec_hash"] == second["spec_hash"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["output"]


def test_folder_without_marker_is_replaced(tables, tmp_path):
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    (output_dir / "stale.txt").write_text("left by an old version", encoding="utf-8")

    result = run_train(parse_train_spec(train_spec(tables, output_dir)), JobLogger())

    assert result["reused"] is False
    assert not (output_dir / "stale.txt").exists()
    assert (output_dir / "model" / "MLmodel").is_file()


def test_missing_columns_exit_2_listing_all(tables, tmp_path):
    bookings = make_bookings(50, seed=5).drop(columns=["lead_time", "room_type_reserved", "booking_status"])
    broken_train = write_table(bookings, tmp_path / "broken-train.parquet")
    spec = train_spec(Tables(broken_train, tables.test_path), tmp_path / "output")

    run = run_job_subprocess("train", spec, tmp_path)

    assert run.exit_code == 2
    assert run.result is None
    final = run.log_lines[-1]
    assert final["level"] == "error"
    assert final["error_type"] == "InvalidInput"
    assert str(broken_train) in final["msg"]
    for column in ("lead_time", "room_type_reserved", "booking_status"):
        assert column in final["msg"]
    assert not (tmp_path / "output").exists()


def test_target_value_2_exits_2(tables, tmp_path):
    bookings = make_bookings(50, seed=6)
    bookings.loc[3, "booking_status"] = 2
    bad_test = write_table(bookings, tmp_path / "bad-test.parquet")
    spec = train_spec(Tables(tables.train_path, bad_test), tmp_path / "output")

    run = run_job_subprocess("train", spec, tmp_path)

    assert run.exit_code == 2
    final = run.log_lines[-1]
    assert final["error_type"] == "InvalidInput"
    assert "values other than 0 and 1: 2" in final["msg"]
    assert str(bad_test) in final["msg"]


def test_missing_file_exits_2(tables, tmp_path, capsys):
    spec = train_spec(Tables(tmp_path / "absent.parquet", tables.test_path), tmp_path / "output")

    exit_code, result = run_job_in_process("train", spec, tmp_path)

    assert exit_code == 2
    assert result is None
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert "absent.parquet does not exist" in final["msg"]


def with_lead_time_type(value_type):
    index = TABLE_SCHEMA.get_field_index("lead_time")
    return TABLE_SCHEMA.set(index, pa.field("lead_time", value_type))


@pytest.mark.parametrize(
    ("mutate", "schema", "message"),
    [
        (lambda frame: frame.assign(booking_status=0), TABLE_SCHEMA, "contains only class 0"),
        (lambda frame: frame.head(0), TABLE_SCHEMA, "has no rows"),
        (
            lambda frame: frame.assign(lead_time=frame["lead_time"].astype(str)),
            with_lead_time_type(pa.string()),
            "numeric input lead_time has type string",
        ),
        (
            lambda frame: frame.assign(lead_time=frame["lead_time"].astype("Int16").mask(frame.index == 4)),
            TABLE_SCHEMA,
            "lead_time has 1 null values",
        ),
        (
            lambda frame: frame.assign(
                booking_status=frame["booking_status"].map({0: "Not_Canceled", 1: "Canceled"})
            ),
            TABLE_SCHEMA.set(
                TABLE_SCHEMA.get_field_index("booking_status"), pa.field("booking_status", pa.string())
            ),
            "target booking_status has type string, expected integers 0 and 1",
        ),
    ],
)
def test_invalid_train_table_exits_2(tables, tmp_path, capsys, mutate, schema, message):
    path = write_table(mutate(make_bookings(60, seed=8)), tmp_path / "train.parquet", schema)
    spec = train_spec(Tables(path, tables.test_path), tmp_path / "output")

    exit_code, _ = run_job_in_process("train", spec, tmp_path)

    assert exit_code == 2
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert final["error_type"] == "InvalidInput"
    assert message in final["msg"]


def test_invalid_lightgbm_parameter_exits_2(tables, tmp_path, capsys):
    spec = train_spec(tables, tmp_path / "output", parameters={"num_leaves": 1})

    exit_code, _ = run_job_in_process("train", spec, tmp_path)

    assert exit_code == 2
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert "LightGBM rejected the parameters" in final["msg"]


def test_malformed_spec_file_exits_2(tmp_path, capsys):
    from hotel_mlops.jobs import main

    spec_path = tmp_path / "spec.json"
    spec_path.write_text("{not json", encoding="utf-8")

    exit_code = main(["train", "--spec", str(spec_path), "--result", str(tmp_path / "result.json")])

    assert exit_code == 2
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert "is not valid JSON" in final["msg"]


def test_unknown_job_exits_2(tmp_path, capsys):
    from hotel_mlops.jobs import main

    exit_code = main(["predict", "--spec", "s.json", "--result", "r.json"])

    assert exit_code == 2
    final = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert final["error_type"] == "InvalidInput"
    assert "invalid choice: 'predict'" in final["msg"]


@pytest.mark.parametrize("key_column", ["booking_id", None])
def test_key_column_makes_metrics_independent_of_row_order(tables, tmp_path, key_column):
    # Row subsampling draws rows by position, so without a sort the stored order changes the model.
    parameters = {**TEST_PARAMETERS, "subsample": 0.7, "subsample_freq": 1}
    shuffled = make_bookings(400, seed=1).sample(frac=1.0, random_state=3)
    shuffled_tables = Tables(write_table(shuffled, tmp_path / "shuffled-train.parquet"), tables.test_path)

    specs = [
        train_spec(source, tmp_path / name, key_column=key_column, parameters=parameters)
        for name, source in (("stored", tables), ("shuffled", shuffled_tables))
    ]
    results = [run_train(parse_train_spec(spec), JobLogger()) for spec in specs]

    same = results[0]["metrics"] == results[1]["metrics"]
    assert same is (key_column is not None)


def test_missing_key_column_exits_2(tables, tmp_path):
    spec = train_spec(tables, tmp_path / "output", key_column="reservation_id")

    run = run_job_subprocess("train", spec, tmp_path)

    assert run.exit_code == 2
    assert "missing the key column reservation_id" in run.log_lines[-1]["msg"]
