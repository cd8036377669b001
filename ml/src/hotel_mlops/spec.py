"""Parsing and validation of the job spec files that the TypeScript activities write.

Every check raises ``InvalidInputError`` with the spec field, the value and the fix, because the
activity cannot retry its way past a bad spec.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotel_mlops.errors import InvalidInputError
from hotel_mlops.feature_lookup import FeatureLookup

# LightGBM parameter names, with aliases, that the spec sets through another field.
RESERVED_PARAMETERS = {"random_state": "seed", "seed": "seed", "random_seed": "seed"}

# Maximum dataset digest length that MLflow accepts (MAX_DATASET_DIGEST_SIZE in mlflow.utils.validation,
# MLflow 3.17).
MLFLOW_MAX_DIGEST_LENGTH = 36


MODEL_FLAVORS = ("sklearn", "pyfunc")


@dataclass(frozen=True)
class ExtraRows:
    """The other segments' table, split by booking id and added to both sides when training on all rows."""

    path: Path
    key: str
    test_fraction: float


@dataclass(frozen=True)
class TrainSpec:
    """Input of the ``train`` job."""

    train_path: Path
    test_path: Path
    output_dir: Path
    target: str
    numeric_inputs: tuple[str, ...]
    categorical_inputs: tuple[str, ...]
    parameters: dict[str, Any]
    seed: int
    # Rows are sorted by this column before fitting, so the model depends only on the set of rows and
    # not on the order in which a table version stores them.
    key_column: str | None = None
    # Features the pipeline computes from the inputs (names from hotel_mlops.features).
    derived_inputs: tuple[str, ...] = ()
    # Name of the feature set in the project config, recorded as a run parameter.
    feature_set: str | None = None
    # sklearn: the pipeline itself, whose predict returns 0/1. pyfunc: the custom wrapper in
    # hotel_mlops.pyfunc_model, returning the label and the probability, with the package wheel.
    flavor: str = "sklearn"
    # The feature-lookup variant: training rows get these features from a feature table by key.
    feature_lookup: FeatureLookup | None = None
    # Set when training on all rows instead of the training segment only.
    extra_rows: ExtraRows | None = None

    @property
    def input_columns(self) -> list[str]:
        """Model input columns in the order of the model signature."""
        return [*self.numeric_inputs, *self.categorical_inputs]

    def hash_payload(self) -> dict[str, Any]:
        """Return the fields that decide the trained model, so everything except ``output_dir``."""
        return {
            "train_path": str(self.train_path),
            "test_path": str(self.test_path),
            "target": self.target,
            "numeric_inputs": list(self.numeric_inputs),
            "categorical_inputs": list(self.categorical_inputs),
            "parameters": self.parameters,
            "seed": self.seed,
            "key_column": self.key_column,
            "derived_inputs": list(self.derived_inputs),
            "flavor": self.flavor,
            "extra_rows": None
            if self.extra_rows is None
            else {"path": str(self.extra_rows.path), "test_fraction": self.extra_rows.test_fraction},
            "feature_lookup": None
            if self.feature_lookup is None
            else {
                "table_path": str(self.feature_lookup.table_path),
                "key": self.feature_lookup.key,
                "features": list(self.feature_lookup.features),
            },
        }


@dataclass(frozen=True)
class ScoreSpec:
    """Input of the ``score`` job: a registered model version scored on one test table."""

    tracking_uri: str
    # ``models:/<name>/<version>``, or a local model folder.
    model_uri: str
    test_path: Path
    target: str
    numeric_inputs: tuple[str, ...]
    categorical_inputs: tuple[str, ...]
    key_column: str | None = None
    # Set when the model trained on all rows: its test part of the other segments joins the test table.
    extra_rows: ExtraRows | None = None

    @property
    def input_columns(self) -> list[str]:
        """Model input columns in the order of the model signature."""
        return [*self.numeric_inputs, *self.categorical_inputs]


@dataclass(frozen=True)
class DatasetRef:
    """One versioned catalog table that a run used, logged as an MLflow dataset input."""

    name: str
    version: int
    path: Path
    context: str
    digest: str


@dataclass(frozen=True)
class LogSpec:
    """Input of the ``log`` job."""

    tracking_uri: str
    experiment_name: str
    run_name: str
    idempotency_key: str
    model_dir: Path
    artifact_path: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    datasets: tuple[DatasetRef, ...]
    # Artifact root for a new experiment. Leave unset against an MLflow server, which picks its own.
    artifact_location: str | None = field(default=None)
    # JSON documents logged as run artifacts, by file name (for example the data-quality report).
    json_artifacts: dict[str, Any] = field(default_factory=dict)
    # Folder whose files (the train job's classification report and plots) are logged under
    # EVALUATION_ARTIFACT_PATH of the run.
    artifact_dir: Path | None = field(default=None)


def unknown_fields(raw: dict[str, Any], spec_type: type) -> list[str]:
    """Return the top-level spec fields that ``spec_type`` does not define, sorted."""
    known = {spec_field.name for spec_field in dataclasses.fields(spec_type)}
    return sorted(set(raw) - known)


def parse_train_spec(raw: Any) -> TrainSpec:
    spec = _require_object(raw, "spec")
    numeric_inputs = _require_name_list(spec, "numeric_inputs", allow_empty=False)
    categorical_inputs = _require_name_list(spec, "categorical_inputs", allow_empty=True)
    target = _require_str(spec, "target")

    duplicates = sorted(set(numeric_inputs) & set(categorical_inputs))
    if duplicates:
        raise InvalidInputError(
            f"Invalid spec: columns {', '.join(duplicates)} appear in both numeric_inputs and "
            "categorical_inputs. List each input column once."
        )
    if target in numeric_inputs or target in categorical_inputs:
        raise InvalidInputError(
            f"Invalid spec: target column {target!r} is also listed as a model input. "
            "Remove it from numeric_inputs and categorical_inputs."
        )

    parameters = _require_object(spec.get("parameters"), "parameters")
    for key, replacement in RESERVED_PARAMETERS.items():
        if key in parameters:
            raise InvalidInputError(
                f"Invalid spec: parameters.{key} is not allowed because the job sets it from the "
                f"{replacement!r} field. Remove parameters.{key} and set {replacement!r} instead."
            )

    derived_inputs = (
        _require_name_list(spec, "derived_inputs", allow_empty=True) if "derived_inputs" in spec else ()
    )
    _check_derived_inputs(derived_inputs, (*numeric_inputs, *categorical_inputs))

    flavor = spec.get("flavor", "sklearn")
    if flavor not in MODEL_FLAVORS:
        raise InvalidInputError(
            f"Invalid spec: flavor {flavor!r} is unknown. Use one of {', '.join(MODEL_FLAVORS)}."
        )

    return TrainSpec(
        train_path=_require_absolute_path(spec, "train_path"),
        test_path=_require_absolute_path(spec, "test_path"),
        output_dir=_require_absolute_path(spec, "output_dir"),
        target=target,
        numeric_inputs=numeric_inputs,
        categorical_inputs=categorical_inputs,
        parameters=parameters,
        seed=_require_int(spec, "seed"),
        key_column=_optional_str(spec, "key_column"),
        derived_inputs=derived_inputs,
        feature_set=_optional_str(spec, "feature_set"),
        flavor=flavor,
        extra_rows=_parse_extra_rows(spec),
        feature_lookup=_parse_feature_lookup(spec, numeric_inputs),
    )


def parse_score_spec(raw: Any) -> ScoreSpec:
    spec = _require_object(raw, "spec")
    return ScoreSpec(
        tracking_uri=_require_str(spec, "tracking_uri"),
        model_uri=_require_str(spec, "model_uri"),
        test_path=_require_absolute_path(spec, "test_path"),
        target=_require_str(spec, "target"),
        numeric_inputs=_require_name_list(spec, "numeric_inputs", allow_empty=False),
        categorical_inputs=_require_name_list(spec, "categorical_inputs", allow_empty=True),
        key_column=_optional_str(spec, "key_column"),
        extra_rows=_parse_extra_rows(spec),
    )


def _parse_extra_rows(spec: dict[str, Any]) -> ExtraRows | None:
    raw = spec.get("extra_rows")
    if raw is None:
        return None
    extra = _require_object(raw, "extra_rows")
    fraction = extra.get("test_fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise InvalidInputError(
            f"Invalid spec: extra_rows.test_fraction must be a number between 0 and 1, got {fraction!r}."
        )
    return ExtraRows(
        path=_require_absolute_path(extra, "path"),
        key=_require_str(extra, "key"),
        test_fraction=float(fraction),
    )


def _parse_feature_lookup(spec: dict[str, Any], numeric_inputs: tuple[str, ...]) -> FeatureLookup | None:
    raw = spec.get("feature_lookup")
    if raw is None:
        return None
    lookup = _require_object(raw, "feature_lookup")
    features = _require_name_list(lookup, "features", allow_empty=False)
    not_inputs = [name for name in features if name not in numeric_inputs]
    if not_inputs:
        raise InvalidInputError(
            f"Invalid spec: feature_lookup.features {', '.join(not_inputs)} are not numeric_inputs. "
            "Look up only features the model uses."
        )
    return FeatureLookup(
        table_path=_require_absolute_path(lookup, "table_path"),
        key=_require_str(lookup, "key"),
        features=features,
    )


def _check_derived_inputs(derived: tuple[str, ...], inputs: tuple[str, ...]) -> None:
    """Raise ``InvalidInputError`` for an unknown derived feature or a raw field it needs but lacks."""
    from hotel_mlops.features import DERIVED_FEATURES, REQUIRED_RAW_FIELDS

    unknown = [name for name in derived if name not in DERIVED_FEATURES]
    if unknown:
        raise InvalidInputError(
            f"Invalid spec: unknown derived_inputs {', '.join(unknown)}. "
            f"Choose from {', '.join(sorted(DERIVED_FEATURES))}."
        )
    missing = sorted(
        {field for name in derived for field in REQUIRED_RAW_FIELDS[name] if field not in inputs}
    )
    if missing:
        raise InvalidInputError(
            f"Invalid spec: derived_inputs need the inputs {', '.join(missing)}. Add them to numeric_inputs."
        )


def parse_log_spec(raw: Any) -> LogSpec:
    spec = _require_object(raw, "spec")
    idempotency_key = _require_str(spec, "idempotency_key")
    # MLflow's run filter syntax has no escape for quotes inside a string literal.
    if any(character in idempotency_key for character in "'\"\\"):
        raise InvalidInputError(
            f"Invalid spec: idempotency_key {idempotency_key!r} contains a quote or backslash, which "
            "MLflow run search cannot match. Use a key without these characters."
        )

    tags = _require_object(spec.get("tags", {}), "tags")
    for key, value in tags.items():
        if not isinstance(value, str):
            raise InvalidInputError(
                f"Invalid spec: tags.{key} must be a string, got {type(value).__name__} {value!r}. "
                "Send every tag value as a JSON string."
            )

    metrics = _require_object(spec.get("metrics"), "metrics")
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInputError(
                f"Invalid spec: metrics.{key} must be a finite number, got {value!r}. "
                "Pass the metrics from the train job result."
            )

    artifact_location = spec.get("artifact_location")
    if artifact_location is not None and (not isinstance(artifact_location, str) or not artifact_location):
        raise InvalidInputError(
            "Invalid spec: artifact_location must be a non-empty string or absent, "
            f"got {artifact_location!r}."
        )

    json_artifacts = _require_object(spec.get("json_artifacts", {}), "json_artifacts")
    for name in json_artifacts:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+\.json", name):
            raise InvalidInputError(
                f"Invalid spec: json_artifacts key {name!r} must be a plain file name ending in .json, "
                "such as data_quality_report.json."
            )

    return LogSpec(
        tracking_uri=_require_str(spec, "tracking_uri"),
        experiment_name=_require_str(spec, "experiment_name"),
        run_name=_require_str(spec, "run_name"),
        idempotency_key=idempotency_key,
        model_dir=_require_absolute_path(spec, "model_dir"),
        artifact_path=_require_str(spec, "artifact_path"),
        params=_require_object(spec.get("params"), "params"),
        metrics={key: float(value) for key, value in metrics.items()},
        tags=dict(tags),
        datasets=_parse_datasets(spec.get("datasets")),
        artifact_location=artifact_location,
        json_artifacts=json_artifacts,
        artifact_dir=None
        if spec.get("artifact_dir") is None
        else _require_absolute_path(spec, "artifact_dir"),
    )


def _parse_datasets(raw: Any) -> tuple[DatasetRef, ...]:
    if not isinstance(raw, list):
        raise InvalidInputError(
            f"Invalid spec: datasets must be a list of objects, got {type(raw).__name__}. "
            "Pass an empty list when the run used no catalog tables."
        )
    datasets = []
    for index, item in enumerate(raw):
        entry = _require_object(item, f"datasets[{index}]")
        prefix = f"datasets[{index}]."
        datasets.append(
            DatasetRef(
                name=_require_str(entry, "name", prefix),
                version=_require_int(entry, "version", prefix),
                path=_require_absolute_path(entry, "path", prefix),
                context=_require_str(entry, "context", prefix),
                digest=_require_str(entry, "digest", prefix),
            )
        )
    return tuple(datasets)


def _require_object(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"Invalid spec: {name} must be a JSON object, got {type(value).__name__}. "
            "Check the spec that the activity wrote."
        )
    return value


def _optional_absolute_path(spec: dict[str, Any], key: str) -> Path | None:
    if spec.get(key) is None:
        return None
    return _require_absolute_path(spec, key)


def _optional_str(spec: dict[str, Any], key: str) -> str | None:
    if spec.get(key) is None:
        return None
    return _require_str(spec, key)


def _require_str(spec: dict[str, Any], key: str, prefix: str = "") -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            f"Invalid spec: {prefix}{key} must be a non-empty string, got {value!r}. Set {prefix}{key}."
        )
    return value


def _require_int(spec: dict[str, Any], key: str, prefix: str = "") -> int:
    value = spec.get(key)
    # bool is a subclass of int in Python, but true/false is never a valid seed or version.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(
            f"Invalid spec: {prefix}{key} must be an integer, got {value!r}. Set {prefix}{key}."
        )
    return value


def _require_absolute_path(spec: dict[str, Any], key: str, prefix: str = "") -> Path:
    value = _require_str(spec, key, prefix)
    path = Path(value)
    if not path.is_absolute():
        raise InvalidInputError(
            f"Invalid spec: {prefix}{key} must be an absolute path, got {value!r}. "
            "Resolve the path before writing the spec."
        )
    return path


def _require_name_list(spec: dict[str, Any], key: str, allow_empty: bool) -> tuple[str, ...]:
    value = spec.get(key)
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise InvalidInputError(
            f"Invalid spec: {key} must be a list of column names, got {value!r}. Set {key}."
        )
    if not value and not allow_empty:
        raise InvalidInputError(f"Invalid spec: {key} must name at least one column. Set {key}.")
    repeated = sorted({item for item in value if value.count(item) > 1})
    if repeated:
        raise InvalidInputError(
            f"Invalid spec: {key} lists {', '.join(repeated)} more than once. List each column once."
        )
    return tuple(value)
