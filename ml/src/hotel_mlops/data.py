"""Reading and validating the train and test Parquet tables that the ingestion writes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hotel_mlops.errors import InvalidInputError
from hotel_mlops.feature_lookup import read_with_lookup
from hotel_mlops.spec import ExtraRows, TrainSpec

# Distinct invalid target values quoted in an error message, at most.
_MAX_QUOTED_VALUES = 5


class TableColumns(Protocol):
    """Columns a job reads from a table: the model inputs, the 0/1 target and the sort key."""

    target: str
    numeric_inputs: tuple[str, ...]
    categorical_inputs: tuple[str, ...]
    key_column: str | None

    @property
    def input_columns(self) -> list[str]: ...


@dataclass(frozen=True)
class Split:
    """Model inputs and 0/1 labels of one table."""

    features: pd.DataFrame
    labels: pd.Series


def check_files_exist(spec: TrainSpec) -> None:
    """Raise ``InvalidInputError`` naming every input file that is missing."""
    missing = [
        f"{role} file {path} does not exist"
        for role, path in (("train", spec.train_path), ("test", spec.test_path))
        if not path.is_file()
    ]
    if missing:
        raise InvalidInputError(
            f"Invalid input: {'; '.join(missing)}. Run the ingestion first or fix train_path/test_path."
        )


def load_splits(spec: TrainSpec) -> tuple[Split, Split]:
    """Read and validate the train and test tables.

    Every problem in both files goes into one ``InvalidInputError`` so that a single run shows the
    whole list of fixes.
    """
    problems: list[str] = []
    tables: dict[str, pa.Table] = {}
    for role, path in (("train", spec.train_path), ("test", spec.test_path)):
        table, file_problems = _read_table(role, path, spec)
        problems.extend(file_problems)
        if table is not None:
            tables[role] = table
    extra = getattr(spec, "extra_rows", None)
    if extra is not None and len(tables) == 2:
        parts, extra_problems = extra_parts(spec, extra)
        problems.extend(extra_problems)
        for role, part in parts.items():
            tables[role] = pa.concat_tables([tables[role], part.cast(tables[role].schema)])

    splits: dict[str, Split] = {}
    for role, table in tables.items():
        path = spec.train_path if role == "train" else spec.test_path
        split, split_problems = _to_split(role, path, table, spec)
        problems.extend(split_problems)
        if split is not None:
            splits[role] = split

    if problems:
        raise InvalidInputError("Invalid input data: " + "; ".join(problems) + ".")
    return splits["train"], splits["test"]


def load_split(role: str, path: Path, spec: TableColumns) -> Split:
    """Read and validate one table, raising ``InvalidInputError`` with every problem found."""
    if not path.is_file():
        raise InvalidInputError(f"Invalid input: {role} file {path} does not exist. Run the ingestion first.")
    table, problems = _read_table(role, path, spec)
    extra = getattr(spec, "extra_rows", None)
    if table is not None and extra is not None:
        parts, extra_problems = extra_parts(spec, extra)
        problems = [*problems, *extra_problems]
        if role in parts:
            table = pa.concat_tables([table, parts[role].cast(table.schema)])
    split = None
    if table is not None:
        split, problems = _to_split(role, path, table, spec)
    if split is None:
        raise InvalidInputError("Invalid input data: " + "; ".join(problems) + ".")
    return split


def is_test_id(booking_id: str, test_fraction: float) -> bool:
    """Return the ingestion's split rule: the first 32 bits of md5(id), modulo one million, below the share.

    The same rule as isTestSql in activities/ingestion-sql.ts, so a booking of the other segments lands
    on the same side in every run.
    """
    prefix = int(hashlib.md5(booking_id.encode("utf-8")).hexdigest()[:8], 16)
    return prefix % 1_000_000 < round(test_fraction * 1_000_000)


def extra_parts(spec: TableColumns, extra: ExtraRows) -> tuple[dict[str, pa.Table], list[str]]:
    """Split the other segments' table by booking id into the rows for train and those for test."""
    columns = [*spec.input_columns, spec.target]
    label = f"extra file {extra.path}"
    try:
        schema = pq.read_schema(extra.path)
    except (pa.ArrowInvalid, OSError) as error:
        return {}, [f"{label} is not a readable Parquet file ({error})"]
    missing = [column for column in [*columns, extra.key] if column not in schema.names]
    if missing:
        return {}, [f"{label} is missing columns {', '.join(missing)}"]
    table = pq.read_table(extra.path, columns=list(dict.fromkeys([*columns, extra.key]))).sort_by(extra.key)
    test_mask = pa.array(
        [is_test_id(str(value), extra.test_fraction) for value in table.column(extra.key).to_pylist()]
    )
    parts = {"train": table.filter(pc.invert(test_mask)), "test": table.filter(test_mask)}
    if extra.key not in columns:
        parts = {role: part.drop_columns([extra.key]) for role, part in parts.items()}
    return parts, []


def _read_table(role: str, path: Path, spec: TableColumns) -> tuple[pa.Table | None, list[str]]:
    label = f"{role} file {path}"
    expected = [*spec.input_columns, spec.target]
    key = spec.key_column
    columns = [*expected, key] if key is not None and key not in expected else expected
    lookup = getattr(spec, "feature_lookup", None)
    table: pa.Table | None = None
    if lookup is not None:
        table, problems = read_with_lookup(role, path, columns, lookup)
        if table is None:
            return None, problems
        schema = table.schema
    else:
        try:
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as error:
            return None, [f"{label} is not a readable Parquet file ({error})"]
        missing = [column for column in expected if column not in schema.names]
        if missing:
            return None, [f"{label} is missing columns {', '.join(missing)}"]
        if key is not None and key not in schema.names:
            return None, [f"{label} is missing the key column {key}"]

    problems = []
    for column in spec.numeric_inputs:
        column_type = schema.field(column).type
        if not (pa.types.is_integer(column_type) or pa.types.is_floating(column_type)):
            problems.append(
                f"{label}: numeric input {column} has type {column_type}, expected an integer or float"
            )
    for column in spec.categorical_inputs:
        column_type = schema.field(column).type
        if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
            problems.append(f"{label}: categorical input {column} has type {column_type}, expected a string")
    target_type = schema.field(spec.target).type
    if not (pa.types.is_integer(target_type) or pa.types.is_boolean(target_type)):
        problems.append(f"{label}: target {spec.target} has type {target_type}, expected integers 0 and 1")
    if problems:
        return None, problems

    if table is None:
        table = pq.read_table(path, columns=columns)
    if key is None:
        return table, []
    table = table.sort_by(key)
    return (table if key in expected else table.drop_columns([key])), []


def _to_split(role: str, path: Path, table: pa.Table, spec: TableColumns) -> tuple[Split | None, list[str]]:
    label = f"{role} file {path}"
    if table.num_rows == 0:
        return None, [f"{label} has no rows"]

    problems = []
    for column in [*spec.input_columns, spec.target]:
        null_count = table.column(column).null_count
        if null_count:
            # An int64 model signature cannot carry nulls, and the ingestion is expected to drop them.
            problems.append(f"{label}: column {column} has {null_count} null values")
    if problems:
        return None, problems

    target = table.column(spec.target).to_pandas().astype("int64")
    invalid_values = sorted(set(target.unique()) - {0, 1})
    if invalid_values:
        quoted = ", ".join(str(value) for value in invalid_values[:_MAX_QUOTED_VALUES])
        return None, [f"{label}: target {spec.target} contains values other than 0 and 1: {quoted}"]
    if target.nunique() < 2:
        # Training needs both classes, and ROC AUC and log loss on the test set are undefined without them.
        only_class = int(target.iloc[0])
        return None, [
            f"{label}: target {spec.target} contains only class {only_class}, both 0 and 1 are required"
        ]

    features = pd.DataFrame(index=pd.RangeIndex(table.num_rows))
    for column in spec.numeric_inputs:
        values = table.column(column).to_pandas()
        # JSON requests to the serving endpoint carry integers, so integer inputs become int64 in the
        # model signature and every float input becomes float64.
        is_integer = pa.types.is_integer(table.schema.field(column).type)
        features[column] = values.astype("int64" if is_integer else "float64")
    for column in spec.categorical_inputs:
        features[column] = table.column(column).to_pandas().astype(object)

    labels = target.rename(spec.target).reset_index(drop=True)
    return Split(features=features, labels=labels), []
