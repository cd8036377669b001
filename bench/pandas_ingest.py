"""Ingest a bookings CSV with pandas, as a baseline for the DuckDB ingestion in activities/ingestion.ts.

Runs the same steps as ingestBookings, in the order a pandas notebook would: read_csv, check the
required columns, map the target, convert numeric columns, check for empty values, normalise arrival
dates, compute date_of_booking, check for duplicate ids, split by segment and by md5(booking_id), and
write three Parquet files with pyarrow. Column names, types and rules come from the same settings as
config/project.yml, copied below so that this script needs nothing but pandas and pyarrow.

Usage: python bench/pandas_ingest.py CSV OUT_DIR [--dates vectorised|rowwise]

Prints one JSON line: row counts per table, seconds spent after the imports, and the process's peak
resident set size (ru_maxrss, KiB on Linux).
"""

import argparse
import datetime as dt
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ID_COLUMN = "Booking_ID"
RENAMES = {"Booking_ID": "booking_id"}
NUMERIC_FEATURES = {
    "no_of_adults": "int16",
    "no_of_children": "int16",
    "no_of_weekend_nights": "int16",
    "no_of_week_nights": "int16",
    "required_car_parking_space": "int16",
    "lead_time": "int16",
    "arrival_year": "int16",
    "arrival_month": "int16",
    "arrival_date": "int16",
    "repeated_guest": "int16",
    "no_of_previous_cancellations": "int16",
    "no_of_previous_bookings_not_canceled": "int16",
    "avg_price_per_room": "float64",
    "no_of_special_requests": "int16",
}
CATEGORICAL_FEATURES = ["type_of_meal_plan", "room_type_reserved", "market_segment_type"]
TARGET = "booking_status"
TARGET_VALUES = {"Canceled": 1, "Not_Canceled": 0}
SEGMENT_COLUMN = "market_segment_type"
SEGMENT_VALUE = "Online"
# A booking is in the test set when the first 8 hex digits of md5(booking_id), as an integer,
# modulo one million are below this threshold (0.2 of one million), as isTestSql does.
TEST_THRESHOLD = 200_000
EXAMPLES = 5


class InvalidInput(ValueError):
    pass


def csv_lines(mask: pd.Series) -> str:
    """Return the CSV line numbers of the first failing rows (line 1 is the header)."""
    positions = np.flatnonzero(mask.to_numpy())[:EXAMPLES]
    return ", ".join(str(p + 2) for p in positions)


def check_required_columns(df: pd.DataFrame, path: str) -> None:
    required = [ID_COLUMN, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES, TARGET]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InvalidInput(f"Data file {path} is missing required columns: {', '.join(missing)}.")
    if len(df) == 0:
        raise InvalidInput(f"Data file {path} has a header but no rows.")


def map_target(df: pd.DataFrame, path: str) -> None:
    mapped = df[TARGET].map(TARGET_VALUES)
    unknown = mapped.isna()
    if unknown.any():
        values = sorted(df.loc[unknown, TARGET].astype(str).unique())[:EXAMPLES]
        raise InvalidInput(
            f"Data file {path}, column {TARGET}: unknown values {values} on lines {csv_lines(unknown)}."
        )
    df[TARGET] = mapped.astype("int32")


def convert_numeric(df: pd.DataFrame, path: str) -> None:
    for name, dtype in NUMERIC_FEATURES.items():
        values = pd.to_numeric(df[name], errors="coerce")
        bad = values.isna()
        if dtype.startswith("int"):
            # astype would wrap an out-of-range value silently, so check the range first.
            limits = np.iinfo(dtype)
            bad |= (values % 1 != 0) | (values < limits.min) | (values > limits.max)
        if bad.any():
            raise InvalidInput(
                f"Data file {path}, column {name}: {int(bad.sum())} values are not {dtype} "
                f"(lines {csv_lines(bad)})."
            )
        df[name] = values.astype(dtype)


def check_not_empty(df: pd.DataFrame, path: str) -> None:
    for name in [ID_COLUMN, *CATEGORICAL_FEATURES]:
        empty = df[name].isna() | (df[name].astype(str).str.strip() == "")
        if empty.any():
            raise InvalidInput(f"Data file {path}, column {name}: {int(empty.sum())} rows are empty.")


def arrival_dates_vectorised(year: pd.Series, month: pd.Series, day: pd.Series) -> tuple[pd.Series, pd.Series]:
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
    fixed = np.select(
        [m > 12, m < 1, d < 1],
        [next_year, this_year, month_start],
        default=next_month,
    )
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
    dates = df.apply(
        lambda row: arrival_date_row(int(row["arrival_year"]), int(row["arrival_month"]), int(row["arrival_date"])),
        axis=1,
    )
    return pd.to_datetime(dates)


def is_real_date(year: pd.Series, month: pd.Series, day: pd.Series) -> pd.Series:
    parts = pd.DataFrame({"year": year, "month": month, "day": day}).astype("int64")
    return pd.to_datetime(parts, errors="coerce").notna()


def check_unique_ids(df: pd.DataFrame, path: str) -> None:
    duplicated = df["booking_id"].duplicated(keep=False)
    if duplicated.any():
        ids = sorted(df.loc[duplicated, "booking_id"].unique())[:EXAMPLES]
        raise InvalidInput(f"Data file {path}, column {ID_COLUMN}: duplicate booking ids {ids}.")


def is_test_id(booking_id: str) -> bool:
    return int(hashlib.md5(booking_id.encode()).hexdigest()[:8], 16) % 1_000_000 < TEST_THRESHOLD


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    # DuckDB writes DATE columns, so store the two dates as date32 rather than timestamps.
    for name in ["date_of_arrival", "date_of_booking"]:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.cast(table[name], pa.date32()))
    pq.write_table(table, path)


def ingest(path: str, out_dir: Path, dates: str) -> dict:
    df = pd.read_csv(path)
    check_required_columns(df, path)
    map_target(df, path)
    convert_numeric(df, path)
    check_not_empty(df, path)
    df = df.rename(columns=RENAMES)

    year, month, day = df["arrival_year"], df["arrival_month"], df["arrival_date"]
    if dates == "rowwise":
        df["date_of_arrival"] = arrival_dates_rowwise(df)
        # Counted only for the report, so that both variants print the same fields.
        normalised = int((~is_real_date(year, month, day)).sum())
    else:
        df["date_of_arrival"], normalised_mask = arrival_dates_vectorised(year, month, day)
        normalised = int(normalised_mask.sum())
    df["date_of_booking"] = df["date_of_arrival"] - pd.to_timedelta(df["lead_time"], unit="D")
    df["update_timestamp_utc"] = pd.Timestamp.now(tz="UTC").tz_localize(None)

    check_unique_ids(df, path)
    df = df.sort_values("booking_id", ignore_index=True)

    online = df[SEGMENT_COLUMN] == SEGMENT_VALUE
    is_test = df["booking_id"].map(is_test_id).astype(bool)
    tables = {
        "train": df[online & ~is_test],
        "test": df[online & is_test],
        "extra": df[~online],
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
        counts = ingest(args.csv, args.out_dir, args.dates)
    except InvalidInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    max_rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**counts, "seconds": round(seconds, 3), "maxRssKiB": max_rss_kib}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
