"""Train and log one model variant in a single Python process, as a notebook would.

The baseline of bench/training-stages.ts. It fits the same pipeline (hotel_mlops.model.build_pipeline)
with the same parameters and seed on the same train table. It logs the parameters, metrics and model
to the same MLflow server, without the control plane's jobs, specs, idempotency and retries.

Usage: python bench/bare_train_log.py TRAIN_PARQUET TEST_PARQUET TRACKING_URI basic|custom PARAMS_JSON

Prints one JSON line with the seconds spent after the imports and in total.
"""

import json
import sys
import time

STARTED = time.monotonic()

import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import pandas as pd  # noqa: E402
from hotel_mlops.evaluate import classification_metrics, positive_class_probability  # noqa: E402
from hotel_mlops.model import SKOPS_TRUSTED_TYPES, build_pipeline  # noqa: E402
from hotel_mlops.pyfunc_model import BookingCancellationModel  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402

IMPORTED = time.monotonic()


def main() -> None:
    train_path, test_path, tracking_uri, variant, params_json = sys.argv[1:6]
    settings = json.loads(params_json)
    inputs = [*settings["numeric_inputs"], *settings["categorical_inputs"]]
    train = pd.read_parquet(train_path).sort_values("booking_id")
    test = pd.read_parquet(test_path)

    pipeline = build_pipeline(
        settings["numeric_inputs"], settings["categorical_inputs"], settings["parameters"], settings["seed"]
    )
    pipeline.fit(train[inputs], train["booking_status"])
    probability = positive_class_probability(pipeline, test[inputs])
    metrics = classification_metrics(test["booking_status"], probability)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"/Shared/bench-bare-{variant}")
    with mlflow.start_run():
        mlflow.log_params(settings["parameters"])
        mlflow.log_metrics(metrics)
        sample = train[inputs].head(100)
        if variant == "custom":
            wrapper = BookingCancellationModel(pipeline)
            mlflow.pyfunc.log_model(
                name="custom-model",
                python_model=wrapper,
                signature=infer_signature(sample, wrapper.predict(None, sample)),
                input_example=train[inputs].head(4),
            )
        else:
            mlflow.sklearn.log_model(
                pipeline,
                name="lightgbm-pipeline-model",
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                signature=infer_signature(sample, pipeline.predict(sample)),
                input_example=train[inputs].head(5),
            )
    finished = time.monotonic()
    print(
        json.dumps(
            {
                "variant": variant,
                "roc_auc": metrics["roc_auc"],
                "seconds_after_imports": round(finished - IMPORTED, 3),
                "seconds_in_process": round(finished - STARTED, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
