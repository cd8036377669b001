"""Fitting, evaluating and saving the pipeline as an MLflow model folder.

This module imports lightgbm and mlflow, which take seconds, so the train job imports it only after
the input data passed validation.
"""

from __future__ import annotations

import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
from lightgbm.basic import LightGBMError
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from hotel_mlops.data import Split
from hotel_mlops.errors import InvalidInputError
from hotel_mlops.evaluate import evaluate_pipeline
from hotel_mlops.joblog import JobLogger
from hotel_mlops.model import MODEL_TYPE, SKOPS_TRUSTED_TYPES, build_pipeline
from hotel_mlops.spec import TrainSpec

# Rows used to infer the model signature. The types come from the DataFrame dtypes, so a few suffice.
_SIGNATURE_SAMPLE_ROWS = 100
_INPUT_EXAMPLE_ROWS = 5
# The original project's custom model logged its first 4 input rows as the example.
_CUSTOM_INPUT_EXAMPLE_ROWS = 4

# Distributions that a serving environment needs to load the skops file and run the pipeline.
# MLflow adds its own pinned version to the list.
_SERVING_DISTRIBUTIONS = ("lightgbm", "scikit-learn", "pandas", "numpy", "skops")


def fit_and_evaluate(
    spec: TrainSpec, train: Split, test: Split, log: JobLogger
) -> tuple[Pipeline, dict[str, Any]]:
    """Fit the pipeline on ``train`` and return it with its test metrics and LightGBM params.

    The second item has the keys ``metrics`` and ``params`` of the job result.
    """
    pipeline = build_pipeline(
        spec.numeric_inputs, spec.categorical_inputs, spec.parameters, spec.seed, spec.derived_inputs
    )
    started = time.monotonic()
    try:
        pipeline.fit(train.features, train.labels)
    except (LightGBMError, TypeError, ValueError) as error:
        # LightGBM and scikit-learn check parameter names, types and ranges only at fit time.
        raise InvalidInputError(
            f"Invalid spec: LightGBM rejected the parameters or the data: {error}. Fix the parameters field."
        ) from error
    log.info("Fitted pipeline", duration_s=round(time.monotonic() - started, 3))

    metrics = evaluate_pipeline(pipeline, test.features, test.labels)
    log.info("Evaluated pipeline on the test table", **metrics)

    # get_params() lists every LightGBM setting, including defaults and random_state.
    params = {
        "model_type": MODEL_TYPE,
        **({"feature_set": spec.feature_set} if spec.feature_set else {}),
        **({"derived_inputs": ",".join(spec.derived_inputs)} if spec.derived_inputs else {}),
        **pipeline.named_steps["classifier"].get_params(),
    }
    return pipeline, {"metrics": metrics, "params": params}


def save_model(spec: TrainSpec, pipeline: Pipeline, train: Split, path: Path) -> None:
    """Save the model of ``spec.flavor`` as an MLflow model folder."""
    if spec.flavor == "pyfunc":
        save_custom_model(pipeline, train, path)
    else:
        save_pipeline(pipeline, train, path)


def save_custom_model(pipeline: Pipeline, train: Split, path: Path) -> None:
    """Save the pyfunc wrapper, serialised with cloudpickle, with the package wheel in its code paths.

    The wheel makes hotel_mlops importable wherever the model is loaded, and the pip requirement
    ``code/<wheel>`` installs it in a serving environment built from the requirements.
    """
    from hotel_mlops.pyfunc_model import BookingCancellationModel, build_package_wheel

    wrapper = BookingCancellationModel(pipeline)
    sample = train.features.head(_SIGNATURE_SAMPLE_ROWS)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = build_package_wheel(Path(scratch))
        mlflow.pyfunc.save_model(
            str(path),
            python_model=wrapper,
            code_paths=[str(wheel)],
            signature=infer_signature(sample, wrapper.predict(None, sample)),
            input_example=train.features.head(_CUSTOM_INPUT_EXAMPLE_ROWS),
            pip_requirements=[
                *(f"{name}=={metadata.version(name)}" for name in (*_SERVING_DISTRIBUTIONS, "cloudpickle")),
                f"code/{wheel.name}",
            ],
        )


def save_pipeline(pipeline: Pipeline, train: Split, path: Path) -> None:
    """Save ``pipeline`` as an MLflow model folder with a signature and an input example."""
    sample = train.features.head(_SIGNATURE_SAMPLE_ROWS)
    signature = infer_signature(sample, pipeline.predict(sample))
    mlflow.sklearn.save_model(
        pipeline,
        str(path),
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        signature=signature,
        input_example=train.features.head(_INPUT_EXAMPLE_ROWS),
        # An explicit list skips MLflow's requirement inference, which loads the model in a subprocess.
        pip_requirements=[f"{name}=={metadata.version(name)}" for name in _SERVING_DISTRIBUTIONS],
    )
