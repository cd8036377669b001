"""Features derived from a booking's raw fields inside the model pipeline.

The model receives the raw fields (arrival year, month and day, lead time, nights, guests, price) and
computes the derived ones itself, so a serving request carries the same fields as a CSV row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

# Day 0 of the *_days_since_2017 features; the dataset's bookings start in 2017.
_EPOCH = np.datetime64("2017-01-01", "D")


def arrival_dates(year: pd.Series, month: pd.Series, day: pd.Series) -> np.ndarray:
    """Return arrival dates as datetime64[D], rolling an impossible date forward like the ingestion.

    Day 0 becomes the 1st, a day past the month's end becomes the 1st of the next month, and a month
    past 12 becomes 1 January of the next year (2018-02-29 becomes 2018-03-01).
    """
    y = year.to_numpy(dtype="int64")
    m = month.to_numpy(dtype="int64")
    d = day.to_numpy(dtype="int64")
    safe_month = np.clip(m, 1, 12)
    month_start = (y - 1970) * 12 + (safe_month - 1)
    first = month_start.astype("datetime64[M]").astype("datetime64[D]")
    next_first = (month_start + 1).astype("datetime64[M]").astype("datetime64[D]")
    days_in_month = (next_first - first).astype("int64")
    exact = first + (np.clip(d, 1, None) - 1).astype("timedelta64[D]")
    return np.select(
        [m > 12, m < 1, d < 1, d > days_in_month],
        [((y + 1 - 1970) * 12).astype("datetime64[M]").astype("datetime64[D]"), first, first, next_first],
        default=exact,
    )


def _days_since_epoch(dates: np.ndarray) -> np.ndarray:
    return (dates - _EPOCH).astype("int64")


def _weekday(dates: np.ndarray) -> np.ndarray:
    # 1970-01-01 was a Thursday; Monday is 0 as in pandas.
    return (dates.astype("int64") + 3) % 7


def _month(dates: np.ndarray) -> np.ndarray:
    return dates.astype("datetime64[M]").astype("int64") % 12 + 1


def _day_of_year(dates: np.ndarray) -> np.ndarray:
    return (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype("int64") + 1


def _dates(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    arrival = arrival_dates(frame["arrival_year"], frame["arrival_month"], frame["arrival_date"])
    booking = arrival - frame["lead_time"].to_numpy(dtype="int64").astype("timedelta64[D]")
    return arrival, booking


def _guests(frame: pd.DataFrame) -> np.ndarray:
    return frame["no_of_adults"].to_numpy(dtype="int64") + frame["no_of_children"].to_numpy(dtype="int64")


# Derived feature name -> function of the raw frame. Each needs only raw booking fields.
DERIVED_FEATURES: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {
    "arrival_weekday": lambda f: _weekday(_dates(f)[0]),
    "arrival_day_of_year": lambda f: _day_of_year(_dates(f)[0]),
    "arrival_days_since_2017": lambda f: _days_since_epoch(_dates(f)[0]),
    "booking_month": lambda f: _month(_dates(f)[1]),
    "booking_weekday": lambda f: _weekday(_dates(f)[1]),
    "booking_days_since_2017": lambda f: _days_since_epoch(_dates(f)[1]),
    "total_nights": lambda f: (
        f["no_of_weekend_nights"].to_numpy(dtype="int64") + f["no_of_week_nights"].to_numpy(dtype="int64")
    ),
    "total_guests": _guests,
    "price_per_guest": lambda f: (
        f["avg_price_per_room"].to_numpy(dtype="float64") / np.maximum(_guests(f), 1)
    ),
}

# Raw fields each derived feature reads; the spec check uses it to list what a feature set must include.
REQUIRED_RAW_FIELDS: dict[str, tuple[str, ...]] = {
    **{
        name: ("arrival_year", "arrival_month", "arrival_date", "lead_time")
        for name in (
            "arrival_weekday",
            "arrival_day_of_year",
            "arrival_days_since_2017",
            "booking_month",
            "booking_weekday",
            "booking_days_since_2017",
        )
    },
    "total_nights": ("no_of_weekend_nights", "no_of_week_nights"),
    "total_guests": ("no_of_adults", "no_of_children"),
    "price_per_guest": ("avg_price_per_room", "no_of_adults", "no_of_children"),
}


class DerivedFeatures(TransformerMixin, BaseEstimator):
    """Appends the named derived features to a DataFrame of raw booking fields."""

    def __init__(self, names: Sequence[str] = ()):
        self.names = names

    def fit(self, frame: pd.DataFrame, labels: object = None) -> DerivedFeatures:
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        if not self.names:
            return frame
        derived = {name: DERIVED_FEATURES[name](frame) for name in self.names}
        return frame.assign(**derived)

    def get_feature_names_out(self, input_features: Sequence[str] | None = None) -> np.ndarray:
        return np.asarray([*(input_features or []), *self.names], dtype=object)
