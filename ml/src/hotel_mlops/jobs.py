"""Command-line entry point of the jobs that the TypeScript activities spawn as child processes.

Usage: ``python -m hotel_mlops.jobs {train|log|score} --spec SPEC.json --result RESULT.json``

The job reads its spec from SPEC.json and, on success only, writes its result to RESULT.json
atomically. Progress goes to stderr as JSON lines (see ``hotel_mlops.joblog``). Exit codes:

* 0: success.
* 2: invalid input (bad spec, missing file or column, bad target values). Retrying cannot help.
* 1: any other failure.

Before a non-zero exit the last stderr line is
``{"level": "error", "msg": ..., "error_type": "InvalidInput" | "JobFailed"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from hotel_mlops.errors import InvalidInputError, JobTerminatedError
from hotel_mlops.fileio import write_json_atomic
from hotel_mlops.joblog import JobLogger, configure_logging

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2

JOBS = ("train", "log", "score")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print plain-text usage and exit 2. The caller expects a JSON error line.
        raise InvalidInputError(f"Invalid command line: {message}. Usage: {self.format_usage().strip()}")


def _build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="python -m hotel_mlops.jobs", description="Run a training or MLflow logging job."
    )
    parser.add_argument(
        "job",
        choices=JOBS,
        help="train: fit and save the model. log: record it in MLflow. score: evaluate a registered model.",
    )
    parser.add_argument("--spec", required=True, type=Path, help="Path of the JSON spec file to read.")
    parser.add_argument("--result", required=True, type=Path, help="Path of the JSON result file to write.")
    return parser


def _raise_terminated(signal_number: int, _frame: FrameType | None) -> None:
    raise JobTerminatedError(f"Job terminated by signal {signal.Signals(signal_number).name}")


def _stop_when_orphaned(poll_seconds: float = 2.0) -> None:
    """Send SIGTERM to this job when its parent (the worker) dies.

    The worker starts the job in its own process group, so a killed worker would otherwise leave it
    running while Temporal retries the activity on another worker.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Run one job and return its exit code."""
    log = JobLogger()
    # Raising instead of dying lets the log job mark its MLflow run FAILED and print the error line.
    signal.signal(signal.SIGTERM, _raise_terminated)
    _stop_when_orphaned()
    started = time.monotonic()
    try:
        args = _build_parser().parse_args(argv)
        log = log.bind(job=args.job)
        # A result left by an earlier attempt must not look like the output of this one.
        args.result.unlink(missing_ok=True)
        raw_spec = _read_spec(args.spec)
        log.info("Job started", spec_path=str(args.spec))

        result = _run_job(args.job, raw_spec, log)

        write_json_atomic(args.result, result)
        log.info(
            "Job finished",
            result_path=str(args.result),
            reused=result.get("reused"),
            duration_s=round(time.monotonic() - started, 3),
        )
        return EXIT_OK
    except InvalidInputError as error:
        log.error(str(error), error_type="InvalidInput")
        return EXIT_INVALID_INPUT
    except (Exception, KeyboardInterrupt) as error:
        log.error(
            f"Job failed: {type(error).__name__}: {error}",
            error_type="JobFailed",
            exception=type(error).__name__,
            traceback=traceback.format_exc(),
            duration_s=round(time.monotonic() - started, 3),
        )
        return EXIT_FAILED


def _read_spec(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInputError(
            f"Invalid input: cannot read spec file {path}: {error.strerror}. "
            "Write the spec before starting the job."
        ) from error
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"Invalid input: spec file {path} is not valid JSON: {error}.") from error


def _run_job(job: str, raw_spec: Any, log: JobLogger) -> dict[str, Any]:
    # Importing the job modules here keeps a broken installation inside the JSON error path.
    from hotel_mlops import spec as specs

    run: Callable[[Any, JobLogger], dict[str, Any]]
    if job == "train":
        from hotel_mlops.train import run_train

        spec: Any = specs.parse_train_spec(raw_spec)
        spec_type: type = specs.TrainSpec
        run = run_train
    elif job == "score":
        from hotel_mlops.score import run_score

        spec = specs.parse_score_spec(raw_spec)
        spec_type = specs.ScoreSpec
        run = run_score
    else:
        from hotel_mlops.tracking import run_log

        spec = specs.parse_log_spec(raw_spec)
        spec_type = specs.LogSpec
        run = run_log

    configure_logging(log)
    # MLflow warns on every inferred schema with int64 columns that they cannot carry nulls. The
    # train job rejects nulls and types integer inputs as int64 on purpose, so the hint is noise.
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
    ignored = specs.unknown_fields(raw_spec, spec_type)
    if ignored:
        log.warning("Spec has fields that this job does not use, ignoring them", fields=ignored)
    return run(spec, log)


if __name__ == "__main__":
    sys.exit(main())
