import numpy as np
import pandas as pd
import pytest

from hotel_mlops.errors import InvalidInputError
from hotel_mlops.features import DERIVED_FEATURES, DerivedFeatures, arrival_dates
from hotel_mlops.spec import parse_train_spec


@pytest.mark.parametrize(
    ("year", "month", "day", "expected"),
    [
        (2018, 2, 29, "2018-03-01"),
        (2025, 2, 31, "2025-03-01"),
        (2017, 13, 5, "2018-01-01"),
        (2023, 12, 32, "2024-01-01"),
        (2020, 2, 29, "2020-02-29"),
        (2018, 6, 0, "2018-06-01"),
        (2018, 0, 10, "2018-01-01"),
        (2018, 7, 15, "2018-07-15"),
    ],
)
def test_arrival_dates_roll_forward_like_the_ingestion(year, month, day, expected):
    dates = arrival_dates(pd.Series([year]), pd.Series([month]), pd.Series([day]))

    assert str(dates[0]) == expected


def booking_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arrival_year": [2018, 2017],
            "arrival_month": [2, 12],
            "arrival_date": [29, 31],
            "lead_time": [10, 365],
            "no_of_weekend_nights": [1, 0],
            "no_of_week_nights": [2, 4],
            "no_of_adults": [2, 0],
            "no_of_children": [1, 0],
            "avg_price_per_room": [90.0, 80.0],
        }
    )


def test_derived_features_of_two_bookings():
    derived = DerivedFeatures(tuple(DERIVED_FEATURES)).fit_transform(booking_frame())

    # 2018-03-01 was a Thursday, the 60th day of 2018 and 424 days after 2017-01-01.
    assert derived["arrival_weekday"].tolist() == [3, 6]
    assert derived["arrival_day_of_year"].tolist() == [60, 365]
    assert derived["arrival_days_since_2017"].tolist() == [424, 364]
    # Bookings 10 days before 2018-03-01 (2018-02-19, a Monday) and 365 days before 2017-12-31.
    assert derived["booking_month"].tolist() == [2, 12]
    assert derived["booking_weekday"].tolist() == [0, 5]
    assert derived["booking_days_since_2017"].tolist() == [414, -1]
    assert derived["total_nights"].tolist() == [3, 4]
    assert derived["total_guests"].tolist() == [3, 0]
    assert derived["price_per_guest"].tolist() == [30.0, 80.0]


def test_no_derived_features_leaves_frame_unchanged():
    frame = booking_frame()

    assert DerivedFeatures(()).fit_transform(frame) is frame
    assert list(DerivedFeatures(("total_nights",)).get_feature_names_out(["a"])) == ["a", "total_nights"]


def spec_with(derived, numeric=("lead_time", "arrival_year", "arrival_month", "arrival_date")):
    return {
        "train_path": "/tmp/train.parquet",
        "test_path": "/tmp/test.parquet",
        "output_dir": "/tmp/out",
        "target": "booking_status",
        "numeric_inputs": list(numeric),
        "categorical_inputs": [],
        "parameters": {},
        "seed": 1,
        "derived_inputs": list(derived),
    }


def test_spec_accepts_derived_inputs_with_their_fields():
    spec = parse_train_spec(spec_with(["arrival_weekday", "booking_month"]))

    assert spec.derived_inputs == ("arrival_weekday", "booking_month")


def test_spec_rejects_unknown_derived_input():
    with pytest.raises(InvalidInputError, match="unknown derived_inputs arrival_season"):
        parse_train_spec(spec_with(["arrival_season"]))


def test_spec_names_raw_fields_a_derived_input_needs():
    with pytest.raises(InvalidInputError, match="need the inputs no_of_adults, no_of_children"):
        parse_train_spec(spec_with(["total_guests"]))


def test_weekday_matches_pandas_for_a_year_of_dates():
    days = pd.date_range("2017-01-01", "2018-12-31")
    frame = pd.DataFrame(
        {"arrival_year": days.year, "arrival_month": days.month, "arrival_date": days.day, "lead_time": 0}
    )

    derived = DerivedFeatures(("arrival_weekday", "arrival_day_of_year")).fit_transform(frame)

    assert np.array_equal(derived["arrival_weekday"].to_numpy(), days.weekday.to_numpy())
    assert np.array_equal(derived["arrival_day_of_year"].to_numpy(), days.dayofyear.to_numpy())
