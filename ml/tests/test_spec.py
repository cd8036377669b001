import pytest
from conftest import Tables, train_spec

from hotel_mlops.errors import InvalidInputError
from hotel_mlops.spec import parse_log_spec, parse_train_spec


def log_spec(**overrides):
    spec = {
        "tracking_uri": "sqlite:///tmp/mlflow.db",
        "experiment_name": "/Shared/hotel-reservations-basic",
        "run_name": "basic",
        "idempotency_key": "wf-1/basic",
        "model_dir": "/tmp/out/model",
        "artifact_path": "lightgbm-pipeline-model",
        "params": {"learning_rate": 0.02},
        "metrics": {"roc_auc": 0.9},
        "tags": {"mlops.env": "dev"},
        "datasets": [
            {
                "name": "cat.schema.train_set",
                "version": 3,
                "path": "/tmp/v3.parquet",
                "context": "training",
                "digest": "ab",
            }
        ],
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def raw_train_spec(tmp_path):
    return train_spec(Tables(tmp_path / "train.parquet", tmp_path / "test.parquet"), tmp_path / "out")


def test_train_spec_parses(raw_train_spec):
    spec = parse_train_spec(raw_train_spec)

    assert spec.input_columns[:2] == ["no_of_adults", "no_of_children"]
    assert spec.input_columns[-2:] == ["type_of_meal_plan", "room_type_reserved"]
    assert "output_dir" not in spec.hash_payload()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("train_path", "relative/train.parquet", "train_path must be an absolute path"),
        ("seed", "42", "seed must be an integer"),
        ("seed", True, "seed must be an integer"),
        ("numeric_inputs", [], "numeric_inputs must name at least one column"),
        ("numeric_inputs", ["lead_time", "lead_time"], "numeric_inputs lists lead_time more than once"),
        ("categorical_inputs", ["lead_time"], "lead_time appear in both"),
        ("target", "", "target must be a non-empty string"),
        ("parameters", {"random_state": 1}, "parameters.random_state is not allowed"),
        ("parameters", {"seed": 1}, "parameters.seed is not allowed"),
        ("parameters", [1], "parameters must be a JSON object"),
    ],
)
def test_invalid_train_spec_names_field(raw_train_spec, field, value, message):
    raw_train_spec[field] = value

    with pytest.raises(InvalidInputError, match=message):
        parse_train_spec(raw_train_spec)


def test_target_as_input_rejected(raw_train_spec):
    raw_train_spec["numeric_inputs"] = [*raw_train_spec["numeric_inputs"], "booking_status"]

    with pytest.raises(InvalidInputError, match="target column 'booking_status' is also listed"):
        parse_train_spec(raw_train_spec)


def test_log_spec_parses():
    spec = parse_log_spec(log_spec())

    assert spec.datasets[0].version == 3
    assert spec.metrics == {"roc_auc": 0.9}
    assert spec.artifact_location is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"idempotency_key": "wf'1"}, "contains a quote"),
        ({"tags": {"mlops.env": 1}}, "tags.mlops.env must be a string"),
        ({"metrics": {"roc_auc": "high"}}, "metrics.roc_auc must be a finite number"),
        ({"metrics": {"roc_auc": True}}, "metrics.roc_auc must be a finite number"),
        ({"datasets": {}}, "datasets must be a list"),
        ({"model_dir": "model"}, "model_dir must be an absolute path"),
        ({"tracking_uri": None}, "tracking_uri must be a non-empty string"),
    ],
)
def test_invalid_log_spec_names_field(overrides, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_log_spec(log_spec(**overrides))


def test_dataset_field_error_names_index():
    dataset = {"name": "t", "version": "3", "path": "/tmp/v3.parquet", "context": "training", "digest": "ab"}

    with pytest.raises(InvalidInputError, match=r"datasets\[0\]\.version must be an integer"):
        parse_log_spec(log_spec(datasets=[dataset]))
