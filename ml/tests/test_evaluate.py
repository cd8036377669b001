import numpy as np
import pandas as pd
import pytest

from hotel_mlops.evaluate import METRIC_NAMES, classification_metrics


def test_metrics_have_all_names():
    labels = pd.Series([0, 1, 0, 1])
    metrics = classification_metrics(labels, np.array([0.2, 0.7, 0.4, 0.9]))

    assert set(metrics) == set(METRIC_NAMES)
    assert all(isinstance(value, float) for value in metrics.values())


def test_roc_auc_uses_probabilities():
    labels = pd.Series([0, 0, 0, 1, 1, 1])
    # Only one probability is above 0.5, so hard labels would give a ROC AUC of 6/9.
    probability = np.array([0.1, 0.2, 0.45, 0.3, 0.4, 0.9])

    metrics = classification_metrics(labels, probability)

    assert metrics["roc_auc"] == pytest.approx(7 / 9)


def test_hard_label_metrics_use_half_threshold():
    labels = pd.Series([0, 0, 0, 1, 1, 1])
    probability = np.array([0.1, 0.2, 0.45, 0.3, 0.4, 0.9])

    metrics = classification_metrics(labels, probability)

    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(0.5)


def test_log_loss_matches_definition():
    labels = pd.Series([0, 1])
    probability = np.array([0.2, 0.6])

    metrics = classification_metrics(labels, probability)

    assert metrics["log_loss"] == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_no_positive_prediction_gives_zero_precision():
    labels = pd.Series([0, 1, 1])
    metrics = classification_metrics(labels, np.array([0.1, 0.3, 0.4]))

    assert metrics["precision"] == 0.0
    assert metrics["recall"] == 0.0
