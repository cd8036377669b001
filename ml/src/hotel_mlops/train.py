"""The ``train`` job: fit the pipeline, evaluate it and save it as an MLflow model folder.

The job is idempotent. It hashes the spec (without ``output_dir``), the content of both input files
and the library versions. When ``output_dir`` already contains a complete result with that hash, the
job returns the stored result with ``reused: true`` instead of fitting again. Otherwise it builds the
new output in a hidden sibling folder and renames it into place, so ``output_dir`` never contains a
half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import hotel_mlops
from hotel_mlops.data import check_files_exist, load_splits
from hotel_mlops.fileio import current_umask, read_json, sha256_file, write_json_atomic
from hotel_mlops.joblog import JobLogger
from hotel_mlops.spec import TrainSpec

MODEL_DIR_NAME = "model"
# Folder of the classification report and plots, which the log job attaches to the run.
EVALUATION_DIR_NAME = "evaluation"
METRICS_FILE = "metrics.json"
# Stored copy of the job result, returned again when a later run reuses this output.
RESULT_FILE = "train_result.json"
# Its spec_hash records which inputs produced the output folder.
MARKER_FILE = "train_marker.json"

# Bump when the output layout or the training code changes in a way that the hash does not capture.
HASH_FORMAT_VERSION = 1

# Libraries whose version changes the fitted model or the saved model format.
_HASHED_DISTRIBUTIONS = ("lightgbm", "scikit-learn", "mlflow", "skops", "numpy", "pandas", "pyarrow")


def compute_spec_hash(spec: TrainSpec) -> str:
    """Return a SHA-256 hex digest that changes whenever a refit could give a different model."""
    payload = {
        "format": HASH_FORMAT_VERSION,
        "spec": spec.hash_payload(),
        "input_sha256": {"train": sha256_file(spec.train_path), "test": sha256_file(spec.test_path)},
        "versions": {
            "hotel-mlops": hotel_mlops.__version__,
            **{name: metadata.version(name) for name in _HASHED_DISTRIBUTIONS},
        },
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def run_train(spec: TrainSpec, log: JobLogger) -> dict[str, Any]:
    """Run the train job and return its result, reusing a matching earlier output when there is one."""
    check_files_exist(spec)
    started = time.monotonic()
    train, test = load_splits(spec)
    log.info(
        "Loaded and validated train and test tables",
        train_rows=len(train.labels),
        test_rows=len(test.labels),
        train_positive_rate=round(float(train.labels.mean()), 4),
        duration_s=round(time.monotonic() - started, 3),
    )

    spec_hash = compute_spec_hash(spec)
    log = log.bind(spec_hash=spec_hash)
    stored = load_stored_result(spec.output_dir, spec_hash, log)
    if stored is not None:
        log.info(
            "Output folder already contains a model for this spec, reusing it",
            output_dir=str(spec.output_dir),
        )
        return {
            **stored,
            "output_dir": str(spec.output_dir),
            "model_dir": str(spec.output_dir / MODEL_DIR_NAME),
            "evaluation_dir": str(spec.output_dir / EVALUATION_DIR_NAME),
            "reused": True,
        }

    # Imported only now because lightgbm and mlflow take seconds to import, and invalid input
    # should fail fast.
    from hotel_mlops.evaluate import positive_class_probability
    from hotel_mlops.fitting import fit_and_evaluate, save_model
    from hotel_mlops.report import write_evaluation

    pipeline, evaluation = fit_and_evaluate(spec, train, test, log)
    result = {
        "output_dir": str(spec.output_dir),
        "model_dir": str(spec.output_dir / MODEL_DIR_NAME),
        "evaluation_dir": str(spec.output_dir / EVALUATION_DIR_NAME),
        "metrics": evaluation["metrics"],
        "params": evaluation["params"],
        "train_rows": len(train.labels),
        "test_rows": len(test.labels),
        "reused": False,
        "spec_hash": spec_hash,
    }

    def write_output(staging: Path) -> None:
        save_model(spec, pipeline, train, staging / MODEL_DIR_NAME)
        probability = positive_class_probability(pipeline, test.features)
        write_evaluation(pipeline, test.features, test.labels, probability, staging / EVALUATION_DIR_NAME)
        write_json_atomic(staging / METRICS_FILE, result["metrics"])
        write_json_atomic(staging / RESULT_FILE, result)
        write_json_atomic(staging / MARKER_FILE, {"spec_hash": spec_hash})

    started = time.monotonic()
    publish_output(spec.output_dir, write_output, log)
    log.info(
        "Saved model and metrics",
        output_dir=str(spec.output_dir),
        duration_s=round(time.monotonic() - started, 3),
    )
    return result


def load_stored_result(output_dir: Path, spec_hash: str, log: JobLogger) -> dict[str, Any] | None:
    """Return the stored result in ``output_dir`` if its marker matches ``spec_hash``, else None."""
    if not output_dir.exists():
        return None
    try:
        marker = read_json(output_dir / MARKER_FILE)
        stored = read_json(output_dir / RESULT_FILE)
    except (OSError, ValueError) as error:
        log.info("Output folder has no complete earlier result, replacing it", reason=str(error))
        return None
    stored_hash = marker.get("spec_hash") if isinstance(marker, dict) else None
    if stored_hash != spec_hash:
        log.info("Output folder was built from other inputs, replacing it", stored_spec_hash=stored_hash)
        return None
    if not isinstance(stored, dict) or not (output_dir / MODEL_DIR_NAME / "MLmodel").is_file():
        log.warning("Output folder has a matching marker but no model, replacing it")
        return None
    return stored


def publish_output(output_dir: Path, write: Callable[[Path], None], log: JobLogger) -> None:
    """Call ``write(staging)`` on a hidden sibling folder, then rename that folder to ``output_dir``.

    A staging folder left by a killed process stays behind as ``.<name>.staging-*``. Nothing reads it.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging-", dir=output_dir.parent))
    try:
        # mkdtemp creates the folder with mode 0700. Other readers, such as a serving container, need
        # the permissions that an ordinary mkdir would give.
        os.chmod(staging, 0o777 & ~current_umask())
        write(staging)
        if output_dir.exists() or output_dir.is_symlink():
            # rename() cannot replace a non-empty folder, so move the old output aside first. Between
            # the two renames output_dir is briefly absent, which a reader sees as "not trained yet".
            retired = output_dir.with_name(f".{output_dir.name}.retired-{uuid.uuid4().hex}")
            os.replace(output_dir, retired)
            os.replace(staging, output_dir)
            log.info("Replaced earlier output folder", output_dir=str(output_dir))
            _remove(retired)
        else:
            os.replace(staging, output_dir)
    except BaseException:
        _remove(staging)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
