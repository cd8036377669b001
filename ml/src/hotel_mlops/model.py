"""Construction of the scikit-learn pipeline: one-hot encoding plus a LightGBM classifier."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from hotel_mlops.features import DerivedFeatures

MODEL_TYPE = "LGBMClassifier with preprocessing"

# The model is saved in the skops format, MLflow 3.17's default outside Databricks, because loading a
# skops file does not execute arbitrary code. skops loads only its built-in safe types plus the types
# listed here, which the pipeline contains.
SKOPS_TRUSTED_TYPES = [
    "collections.OrderedDict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "hotel_mlops.features.DerivedFeatures",
]

# Settings that make a refit on the same data give identical trees. One thread keeps the result
# independent of the machine's core count. Spec parameters override these, at the cost of that
# guarantee.
DETERMINISTIC_SETTINGS: dict[str, Any] = {
    "deterministic": True,
    "force_row_wise": True,
    "n_jobs": 1,
    "verbose": -1,
}


def classifier_parameters(parameters: dict[str, Any], seed: int) -> dict[str, Any]:
    """Return the keyword arguments for ``LGBMClassifier``.

    ``parameters`` override ``DETERMINISTIC_SETTINGS``, and ``seed`` becomes ``random_state``.
    """
    if "random_state" in parameters:
        raise ValueError("parameters must not contain random_state, pass the seed argument instead")
    return {**DETERMINISTIC_SETTINGS, **parameters, "random_state": seed}


def build_pipeline(
    numeric_inputs: Sequence[str],
    categorical_inputs: Sequence[str],
    parameters: dict[str, Any],
    seed: int,
    derived_inputs: Sequence[str] = (),
) -> Pipeline:
    """Build an unfitted pipeline that expects a DataFrame with the named input columns.

    The pipeline first appends the ``derived_inputs`` computed from those columns (see
    ``hotel_mlops.features``). Categories not seen during fit encode as all zeros, so a new room type
    at serving time still gets a prediction.
    """
    preprocessing = ColumnTransformer(
        transformers=[
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(categorical_inputs)),
            ("numeric", "passthrough", [*numeric_inputs, *derived_inputs]),
        ],
        remainder="drop",
    )
    classifier = LGBMClassifier(**classifier_parameters(parameters, seed))
    return Pipeline(
        steps=[
            ("derive", DerivedFeatures(tuple(derived_inputs))),
            ("preprocessing", preprocessing),
            ("classifier", classifier),
        ]
    )
