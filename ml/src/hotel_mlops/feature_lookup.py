"""Training sets built by looking features up in a feature table, as the feature-lookup variant does.

The training rows do not carry the looked-up features: they come from the feature table by key, and
the feature function computes ``lead_time`` from the arrival and booking dates, as Databricks Feature
Engineering would with a FeatureLookup and a FeatureFunction. The test table carries every column, so
only the function output is computed for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

# Ids listed in an error message, at most.
_MAX_LISTED = 5


@dataclass(frozen=True)
class FeatureLookup:
    """A feature table to join by key and the feature function's output column."""

    table_path: Path
    key: str
    features: tuple[str, ...]
    # Output of the feature function, the whole days between the two date columns.
    function_output: str = "lead_time"
    date_columns: tuple[str, str] = ("date_of_arrival", "date_of_booking")


def lead_time_days(arrival: pd.Series, booking: pd.Series) -> pd.Series:
    """Return the whole days from booking to arrival, the feature function of the original project."""
    return (pd.to_datetime(arrival) - pd.to_datetime(booking)).dt.days.astype("int64")


def read_with_lookup(
    role: str, path: Path, columns: list[str], lookup: FeatureLookup
) -> tuple[pa.Table | None, list[str]]:
    """Read ``columns`` of a table, taking looked-up features from the feature table for the train role.

    Returns the table with exactly ``columns`` (in any order), or the problems found.
    """
    label = f"{role} file {path}"
    looked_up = set(lookup.features) if role == "train" else set()
    computed = {lookup.function_output}
    needed = [c for c in columns if c not in looked_up | computed]
    needed += [c for c in (lookup.key, *lookup.date_columns) if c not in needed]
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as error:
        return None, [f"{label} is not a readable Parquet file ({error})"]
    missing = [c for c in needed if c not in schema.names]
    if missing:
        return None, [f"{label} is missing columns {', '.join(missing)}"]

    # The training rows come without the looked-up features, as in a feature-store training set.
    frame = pq.read_table(path, columns=needed).to_pandas()
    frame[lookup.function_output] = lead_time_days(*(frame[c] for c in lookup.date_columns))
    if looked_up:
        features, problems = _feature_table(lookup)
        if problems:
            return None, problems
        frame = frame.merge(features, on=lookup.key, how="left", validate="many_to_one")
        unmatched = frame[frame[list(lookup.features)].isna().any(axis=1)][lookup.key]
        if len(unmatched) > 0:
            listed = ", ".join(unmatched.head(_MAX_LISTED).astype(str))
            return None, [
                f"{label}: {len(unmatched)} rows have no features in {lookup.table_path} "
                f"(for example {listed}); update the feature table from the same table versions"
            ]
    return pa.Table.from_pandas(frame[columns], preserve_index=False), []


def _feature_table(lookup: FeatureLookup) -> tuple[pd.DataFrame, list[str]]:
    label = f"feature table {lookup.table_path}"
    try:
        table = pq.read_table(lookup.table_path, columns=[lookup.key, *lookup.features])
    except (pa.ArrowInvalid, OSError, KeyError) as error:
        return pd.DataFrame(), [
            f"{label} cannot be read with columns {lookup.key}, {', '.join(lookup.features)} ({error})"
        ]
    frame = table.to_pandas()
    repeated = frame[frame[lookup.key].duplicated()][lookup.key]
    if len(repeated) > 0:
        listed = ", ".join(repeated.head(_MAX_LISTED).astype(str))
        return frame, [f"{label}: primary key {lookup.key} repeats {len(repeated)} times ({listed})"]
    return frame, []
