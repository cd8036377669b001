"""Test metrics of the course and extended feature sets, on the Online rows and on all rows.

Reads the feature sets from config/project.yml and the tables an ingestion wrote, fits the product's
pipeline (hotel_mlops.model.build_pipeline) with each set's parameters and the configured seed, and
prints a Markdown table. The Online rows are train_set and test_set. For all rows, extra_set (the other
segments) is split by the same md5 rule as the ingestion and added to both sides, and
market_segment_type becomes a categorical input.

Usage: python bench/feature_sets.py CATALOG_TABLE_DIR
  CATALOG_TABLE_DIR contains train_set/, test_set/ and extra_set/, for example
  .mlops/catalog/mlops_dev/acikgozm after `npm run demo`; the newest version of each table is read.
"""

import hashlib
import sys
import time
from pathlib import Path

import pandas as pd
import yaml
from hotel_mlops.evaluate import classification_metrics, positive_class_probability
from hotel_mlops.model import build_pipeline

CONFIG_FILE = Path(__file__).resolve().parent.parent / "config" / "project.yml"


def newest(table_dir: Path) -> pd.DataFrame:
    versions = sorted(table_dir.glob("v*.parquet"), key=lambda path: int(path.stem[1:]))
    if not versions:
        raise SystemExit(f"No table versions in {table_dir}. Run the ingestion first (npm run demo).")
    return pd.read_parquet(versions[-1]).sort_values("booking_id")


def is_test(booking_id: str, fraction: float) -> bool:
    """Same rule as isTestSql in activities/ingestion-sql.ts: md5 prefix modulo one million."""
    return int(hashlib.md5(booking_id.encode()).hexdigest()[:8], 16) % 1_000_000 < round(fraction * 1_000_000)


def main() -> None:
    tables = Path(sys.argv[1])
    config = yaml.safe_load(CONFIG_FILE.read_text())
    fraction = config["data"]["test_fraction"]
    seed = config["model"]["seed"]
    train, test, extra = (newest(tables / name) for name in ("train_set", "test_set", "extra_set"))
    extra_test = extra["booking_id"].map(lambda booking: is_test(booking, fraction))
    populations = {
        "Online rows": (train, test, []),
        "all rows": (
            pd.concat([train, extra[~extra_test]]),
            pd.concat([test, extra[extra_test]]),
            ["market_segment_type"],
        ),
    }
    print("| feature set | rows | train rows | test rows | ROC AUC | accuracy | F1 | fit s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in ("course", "extended"):
        features = config["feature_sets"][name]
        for population, (train_rows, test_rows, extra_categorical) in populations.items():
            categorical = [*features["categorical_inputs"], *extra_categorical]
            inputs = [*features["numeric_inputs"], *categorical]
            pipeline = build_pipeline(
                features["numeric_inputs"],
                categorical,
                features["parameters"],
                seed,
                features["derived_inputs"],
            )
            started = time.monotonic()
            pipeline.fit(train_rows[inputs], train_rows["booking_status"])
            seconds = time.monotonic() - started
            metrics = classification_metrics(
                test_rows["booking_status"], positive_class_probability(pipeline, test_rows[inputs])
            )
            sizes = f"{len(train_rows):,} | {len(test_rows):,}"
            scores = f"{metrics['roc_auc']:.4f} | {metrics['accuracy']:.4f} | {metrics['f1']:.4f}"
            print(f"| {name} | {population} | {sizes} | {scores} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
