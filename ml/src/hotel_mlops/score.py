"""The score job: metrics of a registered model version on a test table.

The promotion gate compares a new model version with the champion on the same test table version. The
champion was evaluated on the test table of its own training, so the gate scores it again here.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from hotel_mlops.data import load_split
from hotel_mlops.errors import InvalidInputError
from hotel_mlops.evaluate import classification_metrics, positive_class_probability
from hotel_mlops.joblog import JobLogger
from hotel_mlops.spec import ScoreSpec

# Column of a pyfunc model's output that contains the probability of class 1.
PROBABILITY_COLUMN = "probability"


def run_score(spec: ScoreSpec, log: JobLogger) -> dict[str, Any]:
    """Load the model, predict class-1 probabilities for the test table and return the metrics.

    The model's signature decides which columns are read, so a champion trained on another feature
    set than the spec's is scored on its own inputs.
    """
    import mlflow
    from mlflow.models import Model

    mlflow.set_tracking_uri(spec.tracking_uri)
    saved = _load(spec, lambda: Model.load(spec.model_uri))
    columns = _signature_columns(saved)
    if columns is not None:
        spec = dataclasses.replace(spec, numeric_inputs=columns[0], categorical_inputs=columns[1])
    test = load_split("test", spec.test_path, spec)
    started = time.monotonic()
    probability = predict_probability(spec, saved, test.features)
    metrics = classification_metrics(test.labels, probability)
    log.info(
        "Scored model on the test table",
        model_uri=spec.model_uri,
        rows=len(test.labels),
        duration_s=round(time.monotonic() - started, 3),
        **metrics,
    )
    return {"model_uri": spec.model_uri, "rows": len(test.labels), "metrics": metrics}


def _signature_columns(saved: Any) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Return the numeric and categorical input columns of a model's signature, if it has one."""
    if saved.signature is None:
        return None
    numeric, categorical = [], []
    for column in saved.signature.inputs.inputs:
        (categorical if column.type.name == "string" else numeric).append(column.name)
    return tuple(numeric), tuple(categorical)


def _load(spec: ScoreSpec, load: Callable[[], Any]) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return load()
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise InvalidInputError(
                f"Invalid input: model {spec.model_uri} could not be loaded ({error.message[:300]}). "
                "Pass an existing model version."
            ) from error
        raise


def predict_probability(spec: ScoreSpec, saved: Any, features: pd.DataFrame) -> np.ndarray:
    """Return the class-1 probability per row, from a scikit-learn model or a pyfunc probability column."""
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    if "sklearn" in saved.flavors:
        return positive_class_probability(
            _load(spec, lambda: mlflow.sklearn.load_model(spec.model_uri)), features
        )
    model = _load(spec, lambda: mlflow.pyfunc.load_model(spec.model_uri))
    try:
        output = model.predict(features)
    except MlflowException as error:
        raise InvalidInputError(
            f"Invalid input: model {spec.model_uri} rejected the test table's columns "
            f"({error.message[:300]}). Score it on a table with the columns of its signature."
        ) from error
    if isinstance(output, pd.DataFrame) and PROBABILITY_COLUMN in output.columns:
        return output[PROBABILITY_COLUMN].to_numpy(dtype="float64")
    raise InvalidInputError(
        f"Invalid input: model {spec.model_uri} returns {type(output).__name__} without a "
        f"{PROBABILITY_COLUMN!r} column, so it cannot be scored. Register a model that returns one."
    )
