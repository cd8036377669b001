"""MLflow dataset source that names a versioned catalog table and the Parquet file of that version."""

from __future__ import annotations

from typing import Any

from mlflow.data.dataset_source import DatasetSource
from mlflow.data.dataset_source_registry import register_dataset_source


class CatalogTableSource(DatasetSource):
    """Source of a dataset read from version ``version`` of catalog table ``table``.

    MLflow stores ``to_dict()`` as the dataset's source JSON and ``catalog_table`` as its source type,
    so the run page shows which table version a model was trained on.
    """

    def __init__(self, table: str, version: int, path: str) -> None:
        self.table = table
        self.version = version
        self.path = path

    @staticmethod
    def _get_source_type() -> str:
        return "catalog_table"

    def load(self) -> str:
        """Return the local path of the Parquet file that contains this table version."""
        return self.path

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        # Only built explicitly, so MLflow never picks this type for a plain path or URI string.
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> CatalogTableSource:
        raise NotImplementedError("CatalogTableSource is built from table, version and path, not resolved")

    def to_dict(self) -> dict[str, Any]:
        return {"table": self.table, "version": self.version, "path": self.path}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> CatalogTableSource:
        return cls(table=source_dict["table"], version=int(source_dict["version"]), path=source_dict["path"])


# Registration lets mlflow.data.get_source() rebuild this source from a logged run in this process.
register_dataset_source(CatalogTableSource)
