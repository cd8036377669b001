"""Evaluation artifacts of a fitted pipeline: the classification report and four PNG plots.

The train job writes them next to the model, and the log job attaches them to the MLflow run, so the
MLflow UI shows them with the run's metrics.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

# Plots are written to files only; the default backend may look for a display.
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    ConfusionMatrixDisplay,
    PrecisionRecallDisplay,
    RocCurveDisplay,
    classification_report,
)
from sklearn.pipeline import Pipeline  # noqa: E402

from hotel_mlops.fileio import write_json_atomic  # noqa: E402

CLASSIFICATION_REPORT_FILE = "classification_report.json"
PLOT_FILES = ("roc_curve.png", "precision_recall_curve.png", "confusion_matrix.png", "feature_importance.png")
# Features shown in the importance plot; the one-hot columns of the categories make the list long.
_TOP_FEATURES = 20
_CLASS_NAMES = ["not canceled (0)", "canceled (1)"]


def write_evaluation(
    pipeline: Pipeline, features: pd.DataFrame, labels: pd.Series, probability: np.ndarray, folder: Path
) -> list[str]:
    """Write the classification report and the plots of the test set into ``folder``.

    Returns the names of the files written. Labels come from a 0.5 probability threshold, as the
    metrics do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    predicted = (probability > 0.5).astype("int64")
    report = classification_report(
        labels, predicted, labels=[0, 1], target_names=_CLASS_NAMES, output_dict=True, zero_division=0
    )
    write_json_atomic(folder / CLASSIFICATION_REPORT_FILE, report)

    roc_file, pr_file, confusion_file, importance_file = PLOT_FILES
    _save(RocCurveDisplay.from_predictions(labels, probability, name="test set"), folder / roc_file)
    _save(PrecisionRecallDisplay.from_predictions(labels, probability, name="test set"), folder / pr_file)
    confusion = ConfusionMatrixDisplay.from_predictions(
        labels, predicted, labels=[0, 1], display_labels=_CLASS_NAMES
    )
    _save(confusion, folder / confusion_file)
    _plot_importance(pipeline, folder / importance_file)
    return [CLASSIFICATION_REPORT_FILE, *PLOT_FILES]


def _save(display: object, path: Path) -> None:
    figure = display.figure_  # type: ignore[attr-defined]
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_importance(pipeline: Pipeline, path: Path) -> None:
    """Plot the largest total gains of the LightGBM model, by transformed feature name."""
    names = pipeline.named_steps["preprocessing"].get_feature_names_out()
    booster = pipeline.named_steps["classifier"].booster_
    gains = pd.Series(booster.feature_importance(importance_type="gain"), index=names)
    top = gains.sort_values(ascending=True).tail(_TOP_FEATURES)
    figure, axes = plt.subplots(figsize=(8, 0.3 * len(top) + 1.5))
    axes.barh([name.split("__", 1)[-1] for name in top.index], top.to_numpy())
    axes.set_xlabel("total gain")
    axes.set_title("Feature importance")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
