"""Synthetic booking tables and helpers to run the jobs, shared by the tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Importing the package first switches off MLflow telemetry and MLflow's own log handler.
import hotel_mlops  # noqa: F401

NUMERIC_INPUTS = [
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
]
CATEGORICAL_INPUTS = ["type_of_meal_plan", "room_type_reserved"]

# Small and fast, but enough trees to learn the synthetic signal.
TEST_PARAMETERS = {"learning_rate": 0.1, "n_estimators": 40, "num_leaves": 7, "min_child_samples": 5}

# Parquet schema of the ingestion output (DuckDB SMALLINT, DOUBLE, VARCHAR, INTEGER, DATE, TIMESTAMP).
_INT16_COLUMNS = [
    "no_of_adults",
    "no_of_children",
    "no_of_weekend_nights",
    "no_of_week_nights",
    "required_car_parking_space",
    "lead_time",
    "arrival_year",
    "arrival_month",
    "arrival_date",
    "repeated_guest",
    "no_of_previous_cancellations",
    "no_of_previous_bookings_not_canceled",
    "no_of_special_requests",
]
TABLE_SCHEMA = pa.schema(
    [pa.field("booking_id", pa.string())]
    + [pa.field(name, pa.int16()) for name in _INT16_COLUMNS]
    + [
        pa.field("avg_price_per_room", pa.float64()),
        pa.field("type_of_meal_plan", pa.string()),
        pa.field("room_type_reserved", pa.string()),
        pa.field("market_segment_type", pa.string()),
        pa.field("booking_status", pa.int32()),
        pa.field("date_of_arrival", pa.date32()),
        pa.field("date_of_booking", pa.date32()),
        pa.field("update_timestamp_utc", pa.timestamp("us")),
    ]
)


def make_bookings(rows: int, seed: int, id_offset: int = 0) -> pd.DataFrame:
    """Return Online bookings whose cancellation depends on lead time and special requests."""
    rng = np.random.default_rng(seed)
    lead_time = rng.integers(0, 300, rows)
    special_requests = rng.integers(0, 4, rows)
    price = rng.uniform(50.0, 200.0, rows).round(2)
    score = lead_time / 80.0 - 1.2 * special_requests + price / 150.0 - 1.5 + rng.normal(0.0, 0.7, rows)
    arrival = pd.to_datetime("2018-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    return pd.DataFrame(
        {
            "booking_id": [f"INN{index:05d}" for index in range(id_offset, id_offset + rows)],
            "no_of_adults": rng.integers(1, 4, rows),
            "no_of_children": rng.integers(0, 3, rows),
            "no_of_weekend_nights": rng.integers(0, 3, rows),
            "no_of_week_nights": rng.integers(0, 6, rows),
            "required_car_parking_space": rng.integers(0, 2, rows),
            "lead_time": lead_time,
            "arrival_year": arrival.year,
            "arrival_month": arrival.month,
            "arrival_date": arrival.day,
            "repeated_guest": (rng.random(rows) < 0.05).astype(int),
            "no_of_previous_cancellations": np.zeros(rows, dtype=int),
            "no_of_previous_bookings_not_canceled": np.zeros(rows, dtype=int),
            "no_of_special_requests": special_requests,
            "avg_price_per_room": price,
            "type_of_meal_plan": rng.choice(["Meal Plan 1", "Meal Plan 2", "Not Selected"], rows),
            "room_type_reserved": rng.choice(["Room_Type 1", "Room_Type 4", "Room_Type 6"], rows),
            "market_segment_type": "Online",
            "booking_status": (score > 0).astype(int),
            "date_of_arrival": arrival.date,
            "date_of_booking": (arrival - pd.to_timedelta(lead_time, unit="D")).date,
            "update_timestamp_utc": pd.Timestamp("2024-05-01 12:00:00"),
        }
    )


def write_table(frame: pd.DataFrame, path: Path, schema: pa.Schema = TABLE_SCHEMA) -> Path:
    """Write ``frame`` as Parquet with the ingestion's column types, keeping only the schema's columns."""
    columns = [name for name in schema.names if name in frame.columns]
    table = pa.Table.from_pandas(
        frame[columns], schema=pa.schema([schema.field(name) for name in columns]), preserve_index=False
    )
    pq.write_table(table, path)
    return path


@dataclass(frozen=True)
class Tables:
    train_path: Path
    test_path: Path


@pytest.fixture(scope="session")
def tables(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    """Train (400 rows) and test (150 rows) tables shared by the tests, which only read them."""
    folder = tmp_path_factory.mktemp("tables")
    train = write_table(make_bookings(400, seed=1), folder / "train.parquet")
    test = write_table(make_bookings(150, seed=2, id_offset=1000), folder / "test.parquet")
    return Tables(train_path=train, test_path=test)


def train_spec(tables: Tables, output_dir: Path, **overrides: Any) -> dict[str, Any]:
    spec = {
        "train_path": str(tables.train_path),
        "test_path": str(tables.test_path),
        "output_dir": str(output_dir),
        "target": "booking_status",
        "numeric_inputs": list(NUMERIC_INPUTS),
        "categorical_inputs": list(CATEGORICAL_INPUTS),
        "parameters": dict(TEST_PARAMETERS),
        "seed": 42,
    }
    spec.update(overrides)
    return spec


@dataclass(frozen=True)
class JobRun:
    exit_code: int
    result: dict[str, Any] | None
    log_lines: list[dict[str, Any]]
    stderr: str


def run_job_subprocess(job: str, spec: dict[str, Any], folder: Path) -> JobRun:
    """Run ``python -m hotel_mlops.jobs`` as the TypeScript activity does and parse its output."""
    spec_path = folder / f"{job}-spec.json"
    result_path = folder / f"{job}-result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "hotel_mlops.jobs",
            job,
            "--spec",
            str(spec_path),
            "--result",
            str(result_path),
        ],
        cwd=folder,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    return JobRun(
        exit_code=completed.returncode,
        result=json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None,
        log_lines=[json.loads(line) for line in completed.stderr.splitlines() if line.strip()],
        stderr=completed.stderr,
    )


def run_job_in_process(job: str, spec: dict[str, Any], folder: Path) -> tuple[int, dict[str, Any] | None]:
    """Run a job through ``jobs.main`` in this process, which skips the seconds of imports."""
    from hotel_mlops.jobs import main

    spec_path = folder / f"{job}-spec.json"
    result_path = folder / f"{job}-result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    exit_code = main([job, "--spec", str(spec_path), "--result", str(result_path)])
    result = json.loads(result_path.read_text(encoding="utf-8")) if result_path.exists() else None
    return exit_code, result


@dataclass(frozen=True)
class TrainedModel:
    spec: dict[str, Any]
    run: JobRun


@pytest.fixture(scope="session")
def trained(tables: Tables, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """One train job run as a subprocess. Tests must not modify its output folder."""
    folder = tmp_path_factory.mktemp("trained")
    spec = train_spec(tables, folder / "output")
    return TrainedModel(spec=spec, run=run_job_subprocess("train", spec, folder))


@dataclass(frozen=True)
class TrackingStore:
    uri: str
    folder: Path


@dataclass(frozen=True)
class LoggedRun:
    spec: dict[str, Any]
    run: JobRun


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> TrackingStore:
    folder = tmp_path_factory.mktemp("mlflow")
    return TrackingStore(uri=f"sqlite:///{folder / 'mlflow.db'}", folder=folder)


def log_spec(store: TrackingStore, trained, tables, experiment: str, key: str, **overrides) -> dict[str, Any]:
    result = trained.run.result
    spec = {
        "tracking_uri": store.uri,
        "experiment_name": experiment,
        "run_name": "basic-training",
        "idempotency_key": key,
        "model_dir": result["model_dir"],
        "artifact_path": "lightgbm-pipeline-model",
        "params": result["params"],
        "metrics": result["metrics"],
        "tags": {
            "mlops.git_sha": "0123abc",
            "mlops.workflow_id": "wf-1",
            "mlops.workflow_run_id": "run-1",
            "mlops.env": "dev",
        },
        "datasets": [
            {
                "name": "mlops_dev.acikgozm.train_set",
                "version": 3,
                "path": str(tables.train_path),
                "context": "training",
                # Longer than MLflow's 36-character digest field on purpose.
                "digest": "a1" * 32,
            },
            {
                "name": "mlops_dev.acikgozm.test_set",
                "version": 3,
                "path": str(tables.test_path),
                "context": "testing",
                "digest": "b2c3",
            },
        ],
        "json_artifacts": {"data_quality_report.json": {"rowsIn": 600, "arrivalDatesNormalised": 2}},
        "artifact_dir": result["evaluation_dir"],
        # Without it a new experiment would store artifacts under ./mlruns of the working directory.
        "artifact_location": str(store.folder / "artifacts" / experiment.strip("/").replace("/", "-")),
    }
    spec.update(overrides)
    return spec


@pytest.fixture(scope="session")
def logged(store, trained, tables, tmp_path_factory) -> LoggedRun:
    """One log job run as a subprocess against a SQLite tracking store."""
    spec = log_spec(store, trained, tables, "/Shared/hotel-reservations-basic", "wf-1/basic")
    return LoggedRun(spec=spec, run=run_job_subprocess("log", spec, tmp_path_factory.mktemp("log")))
