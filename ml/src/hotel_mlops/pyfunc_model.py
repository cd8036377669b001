"""The custom model: an MLflow pyfunc that wraps the fitted pipeline.

Output contract: ``predict`` returns one row per input record with the columns ``prediction`` (int64,
1 for a predicted cancellation, from a 0.5 threshold) and ``probability`` (float64, the predicted
probability of cancellation). The model signature records both columns. Through a serving endpoint
this becomes ``{"predictions": [{"prediction": 0, "probability": 0.07}, ...]}``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from sklearn.pipeline import Pipeline

from hotel_mlops.errors import InvalidInputError
from hotel_mlops.evaluate import positive_class_probability

PREDICTION_COLUMN = "prediction"
PROBABILITY_COLUMN = "probability"
# Root of the ml/ project, whose pyproject.toml builds the hotel_mlops wheel.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class BookingCancellationModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper returning the label and the cancellation probability per record."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        probability = positive_class_probability(self.pipeline, model_input)
        return pd.DataFrame(
            {
                PREDICTION_COLUMN: (probability > 0.5).astype("int64"),
                PROBABILITY_COLUMN: probability.astype("float64"),
            }
        )


def build_package_wheel(output_dir: Path) -> Path:
    """Build the hotel_mlops wheel from the source tree into ``output_dir`` and return its path.

    Hatchling writes fixed timestamps into the archive, so the same source gives the same wheel.
    """
    if not (_PROJECT_ROOT / "pyproject.toml").is_file():
        raise InvalidInputError(
            f"Invalid input: no pyproject.toml in {_PROJECT_ROOT}, so the custom model's wheel cannot be "
            "built. Run the train job from the source checkout."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        built = subprocess.run(
            [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", scratch],
            cwd=_PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        if built.returncode != 0:
            raise RuntimeError(f"Building the hotel_mlops wheel failed: {built.stderr.strip()[-2000:]}")
        (wheel,) = Path(scratch).glob("*.whl")
        return Path(wheel.replace(output_dir / wheel.name))
