"""Ingest a bookings CSV with pandas, as a baseline for the DuckDB ingestion in activities/ingestion.ts.

Runs the same steps as ingestBookings, the way a pandas notebook would. It reads the file with
read_csv and checks the required columns. It trims ids, categories and labels, applies the configured
value corrections, maps the target, converts numeric columns and checks their minimums, and checks
for empty values and duplicate ids. Then it normalises arrival dates, computes date_of_booking,
counts rows duplicated apart from the id, splits by segment and by md5(booking_id), and writes three
Parquet files with pyarrow. Column names, types and
rules come from the data section of config/project.yml, as they do for ingestBookings. The change
feed that ingestBookings also writes has no counterpart here.

Usage: python bench/pandas_ingest.py CSV OUT_DIR [--dates vectorised|rowwise]

Prints one JSON line: row counts per table, quality counts, seconds spent after the imports, and the
process's peak resident set size (ru_maxrss, KiB on Linux).
"""

import argparse
import datetime as dt
import hashlib
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

CONFIG_FILE = Path(__file__).resolve().parent.parent / "config" / "project.yml"
# Number of failing lines or values an error message lists.
EXAMPLES = 5


class InvalidInput(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """The data section of config/project.yml."""

    id_column: str
    renames: dict
    numeric_features: list
    categorical_features: list
    value_corrections: dict
    target: str
    target_values: dict
    segment_column: str
    segment_value: str
    test_threshold: int

    @classmethod
    def load(cls, path: Path) -> "Settings":
        data = yaml.safe_load(path.read_text())["data"]
        return cls(
            id_column=data["id_column"],
            renames=data["renames"],
            numeric_features=data["numeric_features"],
            categorical_features=data["categorical_features"],
            value_corrections=data.get("value_corrections") or {},
            target=data["target"]["name"],
            target_values=data["target"]["values"],
            segment_column=data["training_segment"]["column"],
            segment_value=data["training_segment"]["value"],
            # A booking is in the test set when the first 8 hex digits of md5(booking_id), as an
            # integer, modulo one million are below this threshold, as isTestSql does.
            test_threshold=round(data["test_fraction"] * 1_000_000),
        )

    @property
    def required_columns(self) -> list:
        return [
            self.id_column,
            *(f["name"] for f in self.numeric_features),
            *self.categorical_features,
            self.target,
        ]

    @property
    def text_columns(self) -> list:
        return [self.id_column, *self.categorical_features, self.target]


def csv_lines(mask: pd.Series) -> str:
    """Return the CSV line numbers of the first rows in `mask` (line 1 is the header)."""
    positions = np.flatnonzero(mask.to_numpy())[:EXAMPLES]
    return ", ".join(str(p + 2) for p in positions)


def check_required_columns(df: pd.DataFrame, path: str, settings: Settings) -> None:
    missing = [c for c in settings.required_columns if c not in df.columns]
    if missing:
        raise InvalidInput(f"Data file {path} is missing required columns: {', '.join(missing)}.")
    if len(df) == 0:
        raise InvalidInput(f"Data file {path} has a header but no rows.")


def count_duplicates_ignoring_id(df: pd.DataFrame, settings: Settings) -> int:
    """Count rows equal to an earlier row in every required column but the id, on the values as read."""
    others = [c for c in settings.required_columns if c != settings.id_column]
    return int(df.duplicated(subset=others).sum())


def trim_text_columns(df: pd.DataFrame, settings: Settings) -> int:
    """Strip surrounding spaces from ids, categories and labels, and return the number of changed values."""
    trimmed = 0
    for name in settings.text_columns:
        values = df[name].astype("string")
        stripped = values.str.strip()
        trimmed += int((values != stripped).fillna(False).sum())
        df[name] = stripped
    return trimmed


def correct_values(df: pd.DataFrame, settings: Settings) -> None:
    """Apply the data.value_corrections mapping of the config to categorical columns, after trimming."""
    for name, corrections in settings.value_corrections.items():
        df[name] = df[name].replace(corrections)


def map_target(df: pd.DataFrame, path: str, settings: Settings) -> None:
    mapped = df[settings.target].map(settings.target_values)
    unknown = mapped.isna()
    if unknown.any():
        values = sorted(df.loc[unknown, settings.target].fillna("<empty>").unique())[:EXAMPLES]
        raise InvalidInput(
            f"Data file {path}, column {settings.target}: unknown values {values} "
            f"on lines {csv_lines(unknown)}."
        )
    df[settings.target] = mapped.astype("int32")


def convert_numeric(df: pd.DataFrame, path: str, settings: Settings) -> None:
    for feature in settings.numeric_features:
        name, dtype = feature["name"], feature["dtype"]
        values = pd.to_numeric(df[name], errors="coerce")
        bad = values.isna()
        if dtype.startswith("int"):
            # astype would wrap an out-of-range value silently, so check the type's range first.
            limits = np.iinfo(dtype)
            bad |= (values % 1 != 0) | (values < limits.min) | (values > limits.max)
        if bad.any():
            raise InvalidInput(
                f"Data file {path}, column {name}: {int(bad.sum())} values are not {dtype} "
                f"(lines {csv_lines(bad)})."
            )
        out_of_range = pd.Series(False, index=values.index)
        if "min" in feature:
            out_of_range |= values < feature["min"]
        if "max" in feature:
            out_of_range |= values > feature["max"]
        if out_of_range.any():
            raise InvalidInput(
                f"Data file {path}, column {name}: {int(out_of_range.sum())} values are out of range "
                f"(lines {csv_lines(out_of_range)})."
            )
        df[name] = values.astype(dtype)


def check_not_empty(df: pd.DataFrame, path: str, settings: Settings) -> None:
    for name in [settings.id_column, *settings.categorical_features]:
        empty = df[name].isna() | (df[name] == "")
        if empty.any():
            raise InvalidInput(f"Data file {path}, column {name}: {int(empty.sum())} rows are empty.")


def check_unique_ids(df: pd.DataFrame, path: str, settings: Settings) -> None:
    duplicated = df[settings.id_column].duplicated(keep=False)
    if duplicated.any():
        ids = sorted(df.loc[duplicated, settings.id_column].unique())[:EXAMPLES]
        raise InvalidInput(f"Data file {path}, column {settings.id_column}: duplicate booking ids {ids}.")


def arrival_dates_vectorised(
    year: pd.Series, month: pd.Series, day: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Build arrival dates, rolling an impossible date forward to the next real one.

    Month > 12 becomes 1 January of the next year, month < 1 becomes 1 January, day < 1 becomes
    the 1st of the month, and a day past the month's end becomes the 1st of the next month.
    Returns the dates and a mask of the rows whose date was normalised.
    """
    parts = pd.DataFrame({"year": year, "month": month, "day": day}).astype("int64")
    dates = pd.to_datetime(parts, errors="coerce")
    bad = dates.isna()
    if not bad.any():
        return dates, bad

    y, m, d = parts.loc[bad, "year"], parts.loc[bad, "month"], parts.loc[bad, "day"]
    month_start = pd.to_datetime(pd.DataFrame({"year": y, "month": m.clip(1, 12), "day": 1}))
    next_month = month_start + pd.to_timedelta(month_start.dt.days_in_month, unit="D")
    next_year = pd.to_datetime(pd.DataFrame({"year": y + 1, "month": 1, "day": 1}))
    this_year = pd.to_datetime(pd.DataFrame({"year": y, "month": 1, "day": 1}))
    fixed = np.select([m > 12, m < 1, d < 1], [next_year, this_year, month_start], default=next_month)
    dates.loc[bad] = pd.to_datetime(fixed)
    return dates, bad


def arrival_date_row(year: int, month: int, day: int) -> dt.datetime:
    """Build one arrival date with the same roll-forward rule as arrival_dates_vectorised."""
    if month > 12:
        return dt.datetime(year + 1, 1, 1)
    if month < 1:
        return dt.datetime(year, 1, 1)
    if day < 1:
        return dt.datetime(year, month, 1)
    try:
        return dt.datetime(year, month, day)
    except ValueError:
        return dt.datetime(year + 1, 1, 1) if month == 12 else dt.datetime(year, month + 1, 1)


def arrival_dates_rowwise(df: pd.DataFrame) -> pd.Series:
    """Build arrival dates with a Python function per row (DataFrame.apply), as the original project did."""
    dates = df.apply(
        lambda row: arrival_date_row(
            int(row["arrival_year"]), int(row["arrival_month"]), int(row["arrival_date"])
        ),
        axis=1,
    )
    return pd.to_datetime(dates)


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    # DuckDB writes DATE columns, so store the two dates as date32 rather than timestamps.
    for name in ["date_of_arrival", "date_of_booking"]:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.cast(table[name], pa.date32()))
    pq.write_table(table, path)


def ingest(path: str, out_dir: Path, dates: str, settings: Settings) -> dict:
    df = pd.read_csv(path)
    check_required_columns(df, path, settings)
    duplicates_ignoring_id = count_duplicates_ignoring_id(df, settings)
    trimmed = trim_text_columns(df, settings)
    correct_values(df, settings)
    map_target(df, path, settings)
    convert_numeric(df, path, settings)
    check_not_empty(df, path, settings)
    check_unique_ids(df, path, settings)
    df = df.rename(columns=settings.renames)
    booking_id = settings.renames.get(settings.id_column, settings.id_column)

    year, month, day = df["arrival_year"], df["arrival_month"], df["arrival_date"]
    if dates == "rowwise":
        df["date_of_arrival"] = arrival_dates_rowwise(df)
        # Counted only for the report, so that both variants print the same fields.
        normalised = int(arrival_dates_vectorised(year, month, day)[1].sum())
    else:
        df["date_of_arrival"], normalised_mask = arrival_dates_vectorised(year, month, day)
        normalised = int(normalised_mask.sum())
    df["date_of_booking"] = df["date_of_arrival"] - pd.to_timedelta(df["lead_time"], unit="D")
    df["update_timestamp_utc"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    # Same column order as the tables that ingestBookings writes.
    source_order = [settings.id_column, *(f["name"] for f in settings.numeric_features)]
    source_order += [*settings.categorical_features, settings.target]
    columns = [settings.renames.get(c, c) for c in source_order]
    df = df[[*columns, "date_of_arrival", "date_of_booking", "update_timestamp_utc"]]
    df = df.sort_values(booking_id, ignore_index=True)

    segment = settings.renames.get(settings.segment_column, settings.segment_column)
    in_segment = df[segment] == settings.segment_value
    # pandas has no vectorised md5, so the hash runs once per row in Python.
    is_test = (
        df[booking_id]
        .map(
            lambda value: (
                int(hashlib.md5(value.encode()).hexdigest()[:8], 16) % 1_000_000 < settings.test_threshold
            )
        )
        .astype(bool)
    )
    tables = {
        "train": df[in_segment & ~is_test],
        "test": df[in_segment & is_test],
        "extra": df[~in_segment],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in tables.items():
        write_parquet(part, out_dir / f"{name}.parquet")
    return {
        "rowsIn": len(df),
        "train": len(tables["train"]),
        "test": len(tables["test"]),
        "extra": len(tables["extra"]),
        "normalised": normalised,
        "trimmed": trimmed,
        "duplicatesIgnoringId": duplicates_ignoring_id,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="bookings CSV in the hotel-reservations layout")
    parser.add_argument("out_dir", type=Path, help="folder for train.parquet, test.parquet and extra.parquet")
    parser.add_argument(
        "--dates",
        choices=["vectorised", "rowwise"],
        default="vectorised",
        help="arrival-date normalisation: pd.to_datetime plus fix-ups, or a Python function per row",
    )
    args = parser.parse_args()

    start = time.perf_counter()
    try:
        counts = ingest(args.csv, args.out_dir, args.dates, Settings.load(CONFIG_FILE))
    except InvalidInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**counts, "seconds": round(seconds, 3), "maxRssKiB": max_rss_kib}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
