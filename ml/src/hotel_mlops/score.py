"""The score job: metrics of a registered model version on a test table.

The promotion gate compares a new model version with the champion on the same test table version. The
champion was evaluated on the test table of its own training, so the gate scores it again here.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from hotel_mlops.data import load_split
from hotel_mlops.errors import InvalidInputError
from hotel_mlops.evaluate import classification_metrics, positive_class_probability
from hotel_mlops.joblog import JobLogger
from hotel_mlops.spec import ScoreSpec

# Column of a pyfunc model's output that holds the probability of class 1.
PROBABILITY_COLUMN = "probability"


def run_score(spec: ScoreSpec, log: JobLogger) -> dict[str, Any]:
    """Load the model, predict class-1 probabilities for the test table and return the metrics."""
    test = load_split("test", spec.test_path, spec)
    started = time.monotonic()
    probability = predict_probability(spec, test.features)
    metrics = classification_metrics(test.labels, probability)
    log.info(
        "Scored model on the test table",
        model_uri=spec.model_uri,
        rows=len(test.labels),
        duration_s=round(time.monotonic() - started, 3),
        **metrics,
    )
    return {"model_uri": spec.model_uri, "rows": len(test.labels), "metrics": metrics}


def predict_probability(spec: ScoreSpec, features: pd.DataFrame) -> np.ndarray:
    """Return the class-1 probability per row, from a scikit-learn model or a pyfunc probability column."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    mlflow.set_tracking_uri(spec.tracking_uri)
    try:
        flavors = Model.load(spec.model_uri).flavors
        if "sklearn" in flavors:
            return positive_class_probability(mlflow.sklearn.load_model(spec.model_uri), features)
        output = mlflow.pyfunc.load_model(spec.model_uri).predict(features)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise InvalidInputError(
                f"Invalid input: model {spec.model_uri} could not be loaded ({error.message}). "
                "Pass an existing model version."
            ) from error
        raise
    if isinstance(output, pd.DataFrame) and PROBABILITY_COLUMN in output.columns:
        return output[PROBABILITY_COLUMN].to_numpy(dtype="float64")
    raise InvalidInputError(
        f"Invalid input: model {spec.model_uri} returns {type(output).__name__} without a "
        f"{PROBABILITY_COLUMN!r} column, so it cannot be scored. Register a model that returns one."
    )
