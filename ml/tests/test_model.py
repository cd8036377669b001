import pytest
from conftest import CATEGORICAL_INPUTS, NUMERIC_INPUTS, TEST_PARAMETERS, make_bookings
from lightgbm import LGBMClassifier
from sklearn.compose import ColumnTransformer

from hotel_mlops.model import build_pipeline, classifier_parameters


def test_pipeline_builds_all_steps():
    pipeline = build_pipeline(NUMERIC_INPUTS, CATEGORICAL_INPUTS, TEST_PARAMETERS, seed=7)

    assert list(pipeline.named_steps) == ["derive", "preprocessing", "classifier"]
    assert pipeline.named_steps["derive"].names == ()
    assert isinstance(pipeline.named_steps["preprocessing"], ColumnTransformer)
    classifier = pipeline.named_steps["classifier"]
    assert isinstance(classifier, LGBMClassifier)
    params = classifier.get_params()
    assert params["random_state"] == 7
    assert params["deterministic"] is True
    assert params["force_row_wise"] is True
    assert params["n_jobs"] == 1
    assert params["learning_rate"] == TEST_PARAMETERS["learning_rate"]


def test_pipeline_ignores_unseen_category():
    bookings = make_bookings(200, seed=3)
    pipeline = build_pipeline(NUMERIC_INPUTS, CATEGORICAL_INPUTS, TEST_PARAMETERS, seed=1)
    inputs = NUMERIC_INPUTS + CATEGORICAL_INPUTS
    pipeline.fit(bookings[inputs], bookings["booking_status"])

    unseen = bookings[inputs].head(2).copy()
    unseen["room_type_reserved"] = "Room_Type 99"

    assert set(pipeline.predict(unseen)) <= {0, 1}


def test_spec_parameters_override_fixed_settings():
    params = classifier_parameters({"n_jobs": 2, "num_leaves": 9}, seed=3)

    assert params["n_jobs"] == 2
    assert params["num_leaves"] == 9
    assert params["random_state"] == 3


def test_random_state_parameter_rejected():
    with pytest.raises(ValueError, match="random_state"):
        classifier_parameters({"random_state": 1}, seed=3)


def test_pipeline_uses_derived_inputs():
    bookings = make_bookings(300, seed=4)
    numeric = [*NUMERIC_INPUTS, "arrival_year", "arrival_month", "arrival_date"]
    pipeline = build_pipeline(
        numeric, CATEGORICAL_INPUTS, TEST_PARAMETERS, seed=1, derived_inputs=["arrival_weekday"]
    )
    pipeline.fit(bookings[numeric + CATEGORICAL_INPUTS], bookings["booking_status"])

    names = list(pipeline.named_steps["preprocessing"].get_feature_names_out())
    assert "numeric__arrival_weekday" in names
    assert pipeline.named_steps["classifier"].n_features_in_ == len(names)
