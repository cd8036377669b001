import json
import zipfile
from pathlib import Path

import mlflow.pyfunc
import pytest
from conftest import (
    CATEGORICAL_INPUTS,
    NUMERIC_INPUTS,
    log_spec,
    make_bookings,
    run_job_subprocess,
    train_spec,
)
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from hotel_mlops.pyfunc_model import PREDICTION_COLUMN, PROBABILITY_COLUMN

INPUTS = [*NUMERIC_INPUTS, *CATEGORICAL_INPUTS]


@pytest.fixture(scope="module")
def custom(tables, tmp_path_factory):
    """The train job run once with the pyfunc flavor."""
    folder = tmp_path_factory.mktemp("custom")
    run = run_job_subprocess("train", train_spec(tables, folder / "output", flavor="pyfunc"), folder)
    assert run.exit_code == 0, run.stderr
    return run.result


def test_custom_model_carries_wrapper_and_wheel(custom):
    model_dir = Path(custom["model_dir"])
    saved = Model.load(str(model_dir))

    assert "sklearn" not in saved.flavors
    assert saved.flavors["python_function"]["cloudpickle_version"]
    (wheel,) = (model_dir / "code").glob("hotel_mlops-*.whl")
    assert "hotel_mlops/pyfunc_model.py" in zipfile.ZipFile(wheel).namelist()
    requirements = (model_dir / "requirements.txt").read_text().split()
    assert f"code/{wheel.name}" in requirements
    assert any(line.startswith("lightgbm==") for line in requirements)


def test_custom_model_signature_documents_output(custom):
    outputs = Model.load(custom["model_dir"]).signature.outputs.to_dict()

    assert [(column["name"], column["type"]) for column in outputs] == [
        (PREDICTION_COLUMN, "long"),
        (PROBABILITY_COLUMN, "double"),
    ]


def test_custom_model_predicts_label_and_probability(custom, trained):
    model = mlflow.pyfunc.load_model(custom["model_dir"])
    bookings = make_bookings(20, seed=8)
    output = model.predict(bookings[INPUTS])

    assert list(output.columns) == [PREDICTION_COLUMN, PROBABILITY_COLUMN]
    assert len(output) == 20
    assert output[PROBABILITY_COLUMN].between(0, 1).all()
    assert (output[PREDICTION_COLUMN] == (output[PROBABILITY_COLUMN] > 0.5).astype("int64")).all()
    # Same pipeline, same data: the metrics equal those of the basic model.
    assert custom["metrics"] == trained.run.result["metrics"]


def test_log_job_logs_custom_model(custom, store, trained, tables, tmp_path):
    spec = log_spec(store, trained, tables, "/Shared/hotel-reservations-custom", "wf-custom/custom-model")
    spec.update(
        model_dir=custom["model_dir"], artifact_path="custom-model", artifact_dir=custom["evaluation_dir"]
    )

    run = run_job_subprocess("log", spec, tmp_path)

    assert run.exit_code == 0, run.stderr
    logged = MlflowClient(store.uri).get_logged_model(run.result["model_id"])
    assert logged.name == "custom-model"
    mlflow.set_tracking_uri(store.uri)
    model = mlflow.pyfunc.load_model(f"models:/{run.result['model_id']}")
    output = model.predict(make_bookings(3, seed=2)[INPUTS])
    assert list(output.columns) == [PREDICTION_COLUMN, PROBABILITY_COLUMN]
    assert json.loads(json.dumps(output.to_dict(orient="records")))[0].keys() == {"prediction", "probability"}
