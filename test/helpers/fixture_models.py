"""Register small MLflow model versions with known behaviour, as fixtures for model serving tests.

Usage::

    ml/.venv/bin/python test/helpers/fixture_models.py --tracking-uri URI --model-name NAME \\
        --kinds good,slow,... [--slow-ms N] [--error-share F]

Registers one new version of the registered model NAME per kind, in the order given, and prints one
JSON line to stdout: ``{"versions": [{"kind": ..., "name": ..., "version": "N"}]}``. Logs go to stderr.
Exit codes: 0 on success, 2 for an invalid command line, 1 for any other failure.

Every kind takes the hotel booking columns of ``NUMERIC_COLUMNS`` and ``CATEGORICAL_COLUMNS``:

* ``good``, ``good_alt``: scikit-learn pipelines (sklearn flavor) that predict 0/1 labels, fitted on
  synthetic rows in well under a second. They differ in seed and classifier.
* ``bad_output``: a pyfunc that predicts 7 for every row, which breaks a 0/1 label contract.
* ``broken_start``: a pyfunc whose ``load_context`` raises, so ``mlflow models serve`` exits before
  ``GET /ping`` returns 200.
* ``slow``: a pyfunc that sleeps ``--slow-ms`` per request, then predicts 0.
* ``flaky``: a pyfunc that raises for a share ``--error-share`` of requests and predicts 0 otherwise.

The pyfunc classes live in this module, which each pyfunc model carries in its ``code_paths``, so a
model server started with ``--env-manager local`` from the ml/ environment can unpickle them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any, NoReturn

# MLflow 3 sends usage telemetry to an external host unless this is set, and draws progress bars on
# stderr for artifact uploads unless the second is false. Both are set before mlflow is imported.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow 3.17 retries a failed request 7 times with backoff factor 2, which kept the script waiting for
# more than 200 s on a tracking URI with nothing listening. Tests need that failure within seconds, and
# a caller can still set its own values.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

import mlflow  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2

NUMERIC_COLUMNS = (
    "no_of_adults",
    "no_of_children",
    "no_of_weekend_nights",
    "no_of_week_nights",
    "required_car_parking_space",
    "lead_time",
    "repeated_guest",
    "no_of_previous_cancellations",
    "no_of_previous_bookings_not_canceled",
    "avg_price_per_room",
    "no_of_special_requests",
)
CATEGORICAL_COLUMNS = ("type_of_meal_plan", "room_type_reserved", "market_segment_type")

EXPERIMENT_NAME = "fixture-models"
TRAINING_ROWS = 300
EXAMPLE_ROWS = 3
DEFAULT_SLOW_MS = 400
DEFAULT_ERROR_SHARE = 1.0
BAD_OUTPUT_VALUE = 7

log = logging.getLogger("fixture_models")


class ConstantModel(mlflow.pyfunc.PythonModel):
    """Pyfunc that predicts ``value`` for every row."""

    def __init__(self, value: int):
        self.value = value

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        return np.full(len(model_input), self.value, dtype=np.int64)


class BrokenStartModel(mlflow.pyfunc.PythonModel):
    """Pyfunc that raises while loading, so no model server can start with it."""

    def load_context(self, context: Any) -> None:
        raise RuntimeError(
            "Fixture model broken_start fails on purpose in load_context, so that model serving tests "
            "see a model server that exits before it becomes ready."
        )

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        raise RuntimeError("Fixture model broken_start has no predictions, because it never loads.")


class SlowModel(mlflow.pyfunc.PythonModel):
    """Pyfunc that sleeps ``delay_ms`` milliseconds per request, then predicts 0 for every row."""

    def __init__(self, delay_ms: int):
        self.delay_ms = delay_ms

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        time.sleep(self.delay_ms / 1000)
        return np.zeros(len(model_input), dtype=np.int64)


class FlakyModel(mlflow.pyfunc.PythonModel):
    """Pyfunc that raises for a share ``error_share`` of requests and predicts 0 for every row otherwise.

    Request n (counted from 1) fails when floor(n * error_share) > floor((n - 1) * error_share), so the
    failures are evenly spread and repeatable: with 0.5 every second request fails, with 1.0 all do.
    NOTE: the counter is per process, so the pattern applies per uvicorn worker. Serve the model with one
    worker for an exact sequence.
    """

    def __init__(self, error_share: float):
        self.error_share = error_share
        self._requests = 0
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # A lock cannot be pickled, and every loaded copy starts counting from zero.
        return {"error_share": self.error_share}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["error_share"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        with self._lock:
            self._requests += 1
            request = self._requests
        if math.floor(request * self.error_share) > math.floor((request - 1) * self.error_share):
            raise RuntimeError(
                f"Fixture model flaky fails request {request} on purpose (error share {self.error_share})."
            )
        return np.zeros(len(model_input), dtype=np.int64)


def synthetic_bookings(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Return ``rows`` random bookings and 0/1 labels that depend on lead time and special requests."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "no_of_adults": rng.integers(1, 4, rows),
            "no_of_children": rng.integers(0, 3, rows),
            "no_of_weekend_nights": rng.integers(0, 3, rows),
            "no_of_week_nights": rng.integers(0, 6, rows),
            "required_car_parking_space": rng.integers(0, 2, rows),
            "lead_time": rng.integers(0, 300, rows),
            "repeated_guest": rng.integers(0, 2, rows),
            "no_of_previous_cancellations": rng.integers(0, 2, rows),
            "no_of_previous_bookings_not_canceled": rng.integers(0, 3, rows),
            "avg_price_per_room": rng.uniform(50, 200, rows).round(2),
            "no_of_special_requests": rng.integers(0, 4, rows),
            "type_of_meal_plan": rng.choice(["Meal Plan 1", "Meal Plan 2", "Not Selected"], rows),
            "room_type_reserved": rng.choice(["Room_Type 1", "Room_Type 2", "Room_Type 4"], rows),
            "market_segment_type": rng.choice(["Online", "Offline", "Corporate"], rows),
        }
    )
    # Both labels must occur for a classifier to fit, and this rule gives each roughly half the rows.
    score = frame["lead_time"] / 100 - frame["no_of_special_requests"] + rng.normal(0, 0.5, rows)
    labels = (score > 0.5).astype(np.int64).to_numpy()
    return frame, labels


def fit_pipeline(classifier: Any, seed: int) -> tuple[Pipeline, pd.DataFrame]:
    """Fit a one-hot encoding plus ``classifier`` pipeline and return it with its training frame."""
    frame, labels = synthetic_bookings(TRAINING_ROWS, seed)
    preprocessing = ColumnTransformer(
        transformers=[
            ("categorical", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_COLUMNS)),
            ("numeric", StandardScaler(), list(NUMERIC_COLUMNS)),
        ]
    )
    pipeline = Pipeline(steps=[("preprocessing", preprocessing), ("classifier", classifier)])
    pipeline.fit(frame, labels)
    return pipeline, frame


def requirements(*distributions: str) -> list[str]:
    """Return pip requirements pinned to the installed versions.

    An explicit list skips MLflow's requirement inference, which loads the model in a subprocess.
    """
    return [f"{name}=={metadata.version(name)}" for name in distributions]


def log_pipeline(
    kind: str, model_name: str, classifier: Any, seed: int, trusted_types: list[str] | None = None
) -> mlflow.models.model.ModelInfo:
    pipeline, frame = fit_pipeline(classifier, seed)
    return mlflow.sklearn.log_model(
        sk_model=pipeline,
        name=kind,
        # MLflow 3.17 saves in the skops format by default, which loads only the types it trusts.
        skops_trusted_types=trusted_types,
        signature=infer_signature(frame, pipeline.predict(frame)),
        input_example=frame.head(EXAMPLE_ROWS),
        pip_requirements=requirements("mlflow", "scikit-learn", "pandas", "numpy", "skops"),
        registered_model_name=model_name,
    )


def log_pyfunc(kind: str, model_name: str, model: mlflow.pyfunc.PythonModel) -> mlflow.models.model.ModelInfo:
    frame, _ = synthetic_bookings(EXAMPLE_ROWS, seed=0)
    # No input example, because MLflow 3.17 then loads the model and predicts on the example in this
    # process to validate it, which runs load_context and logs a warning for broken_start.
    return mlflow.pyfunc.log_model(
        name=kind,
        python_model=model,
        code_paths=[__file__],
        signature=infer_signature(frame, np.zeros(len(frame), dtype=np.int64)),
        pip_requirements=requirements("mlflow", "pandas", "numpy", "cloudpickle"),
        registered_model_name=model_name,
    )


def model_builders(args: argparse.Namespace) -> dict[str, Callable[[str], mlflow.models.model.ModelInfo]]:
    """Return a function per kind that logs and registers its model under ``args.model_name``."""
    name = args.model_name
    return {
        "good": lambda kind: log_pipeline(kind, name, LogisticRegression(max_iter=200, random_state=1), 1),
        "good_alt": lambda kind: log_pipeline(
            kind, name, DecisionTreeClassifier(max_depth=4, random_state=2), 2, ["sklearn.tree._tree.Tree"]
        ),
        "bad_output": lambda kind: log_pyfunc(kind, name, ConstantModel(BAD_OUTPUT_VALUE)),
        "broken_start": lambda kind: log_pyfunc(kind, name, BrokenStartModel()),
        "slow": lambda kind: log_pyfunc(kind, name, SlowModel(args.slow_ms)),
        "flaky": lambda kind: log_pyfunc(kind, name, FlakyModel(args.error_share)),
    }


KINDS = ("good", "good_alt", "bad_output", "broken_start", "slow", "flaky")


class InvalidInputError(Exception):
    """Invalid command line."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InvalidInputError(f"Invalid command line: {message}. Usage: {self.format_usage().strip()}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _ArgumentParser(
        prog="fixture_models.py", description="Register fixture model versions for model serving tests."
    )
    parser.add_argument(
        "--tracking-uri", required=True, help="MLflow tracking server, such as http://127.0.0.1:5000."
    )
    parser.add_argument("--model-name", required=True, help="Registered model that gets the new versions.")
    parser.add_argument(
        "--kinds", required=True, help=f"Comma-separated kinds, one version each, from: {', '.join(KINDS)}."
    )
    parser.add_argument(
        "--slow-ms", type=int, default=DEFAULT_SLOW_MS, help="Delay per request of the slow kind, in ms."
    )
    parser.add_argument(
        "--error-share",
        type=float,
        default=DEFAULT_ERROR_SHARE,
        help="Share of requests that the flaky kind fails, from 0 to 1.",
    )
    args = parser.parse_args(argv)

    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    unknown = [kind for kind in args.kinds if kind not in KINDS]
    if not args.kinds or unknown:
        raise InvalidInputError(
            f"Invalid --kinds: unknown kind(s) {unknown or '(none given)'}. Use a comma-separated list of: "
            f"{', '.join(KINDS)}."
        )
    if not args.model_name.strip():
        raise InvalidInputError("Invalid --model-name: it is empty. Pass the registered model name.")
    if args.slow_ms < 0:
        raise InvalidInputError(f"Invalid --slow-ms {args.slow_ms}: expected 0 or more milliseconds.")
    if not 0 <= args.error_share <= 1:
        raise InvalidInputError(f"Invalid --error-share {args.error_share}: expected a number from 0 to 1.")
    return args


def register(args: argparse.Namespace) -> list[dict[str, str]]:
    """Log and register one model version per kind and return their kinds, names and versions."""
    mlflow.set_tracking_uri(args.tracking_uri)
    mlflow.set_experiment(EXPERIMENT_NAME)
    builders = model_builders(args)
    versions = []
    for kind in args.kinds:
        started = time.monotonic()
        with mlflow.start_run(run_name=f"fixture-{kind}"):
            info = builders[kind](kind)
        version = str(info.registered_model_version)
        log.info(
            "Registered fixture model %s version %s (kind %s) in %.2f s",
            args.model_name,
            version,
            kind,
            time.monotonic() - started,
        )
        versions.append({"kind": kind, "name": args.model_name, "version": version})
    return versions


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The integer columns are complete by construction, so MLflow's hint about missing values is noise.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
    # log_pyfunc omits the input example on purpose. MLflow colours the warning, hence the leading ".*".
    warnings.filterwarnings("ignore", message=".*An input example was not provided")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except InvalidInputError as error:
        log.error("%s", error)
        return EXIT_INVALID_INPUT

    started = time.monotonic()
    try:
        # MLflow prints some messages to stdout, which must contain only the JSON result.
        with contextlib.redirect_stdout(sys.stderr):
            versions = register(args)
    except Exception:
        log.exception("Registering fixture models in %s failed", args.tracking_uri)
        return EXIT_FAILED
    log.info("Registered %d fixture model versions in %.2f s", len(versions), time.monotonic() - started)
    print(json.dumps({"versions": versions}), flush=True)
    return EXIT_OK


if __name__ == "__main__":
    # Run main from the module imported under its own name, so that pickled pyfunc classes refer to
    # `fixture_models.<class>`, which a model server can import from the model's code_paths copy. Run
    # as a script, they would refer to `__main__`, which does not contain them there.
    import fixture_models

    sys.exit(fixture_models.main())
