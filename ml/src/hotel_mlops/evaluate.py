"""Classification metrics of a fitted pipeline on a labelled table."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline

METRIC_NAMES = ("accuracy", "roc_auc", "precision", "recall", "f1", "log_loss")


def positive_class_probability(pipeline: Pipeline, features: pd.DataFrame) -> np.ndarray:
    """Return the predicted probability of class 1 (canceled) for each row."""
    classes = list(pipeline.classes_)
    return pipeline.predict_proba(features)[:, classes.index(1)]


def classification_metrics(labels: pd.Series, probability: np.ndarray) -> dict[str, float]:
    """Compute the metrics in ``METRIC_NAMES`` from 0/1 labels and class-1 probabilities.

    ROC AUC and log loss use the probabilities. The other metrics use hard labels with class 1 for
    a probability above 0.5, which is what ``predict`` of a binary LightGBM model returns.
    """
    predicted = (probability > 0.5).astype("int64")
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, probability)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "log_loss": float(log_loss(labels, probability, labels=[0, 1])),
    }


def evaluate_pipeline(pipeline: Pipeline, features: pd.DataFrame, labels: pd.Series) -> dict[str, float]:
    return classification_metrics(labels, positive_class_probability(pipeline, features))
