"""Structured progress logging for the jobs: one JSON object per line on stderr.

Each line has ``level`` ("info", "warning" or "error"), ``msg`` and extra fields. The TypeScript
activity that spawns a job parses these lines and forwards them to its pino logger, so stdout stays
free for library output that is not part of the contract.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from typing import Any

# Environment variables whose values must never appear in a log line, even inside an error message
# from a library that echoes its configuration.
SECRET_ENV_VARS = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)

# Matches the user-info part of a URL, as in http://user:password@host.
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")

# Library log messages that carry no information for a job run, matched by prefix.
# MLflow 3.17 warns about pip's version in every save_model when the environment was built by uv,
# which installs no pip. The saved requirements.txt does not depend on it.
_IGNORED_MESSAGE_PREFIXES = ("Failed to resolve installed pip version",)

# Loggers that MLflow configures with its own plain-text stderr handler when it is imported.
_LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey")


def redact(text: str) -> str:
    """Replace URL credentials and the values of ``SECRET_ENV_VARS`` in ``text`` with ``***``."""
    redacted = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for name in SECRET_ENV_VARS:
        secret = os.environ.get(name)
        # Very short values would blank out ordinary words, and no real token is that short.
        if secret and len(secret) >= 6:
            redacted = redacted.replace(secret, "***")
    return redacted


def _to_json_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no NaN or Infinity, and JSON.parse on the TypeScript side rejects them.
        return str(value)
    return value


class JobLogger:
    """Writer of JSON log lines with a fixed set of context fields, such as the job name."""

    def __init__(self, **context: Any) -> None:
        self._context = context

    def bind(self, **fields: Any) -> JobLogger:
        """Return a logger that adds ``fields`` to every line."""
        return JobLogger(**self._context, **fields)

    def info(self, msg: str, **fields: Any) -> None:
        self.emit("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.emit("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.emit("error", msg, **fields)

    def emit(self, level: str, msg: str, **fields: Any) -> None:
        record: dict[str, Any] = {"level": level, "msg": redact(msg)}
        for key, value in {**self._context, **fields}.items():
            if key not in ("level", "msg"):
                record[key] = _to_json_value(value)
        # default=str turns paths, numpy scalars and timestamps into strings instead of failing.
        line = json.dumps(record, default=str, ensure_ascii=False)
        # sys.stderr is looked up on every call so that test capture and redirection see the lines.
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


class JsonLogHandler(logging.Handler):
    """Handler that writes standard-library log records, such as MLflow's warnings, as JSON lines."""

    def __init__(self, logger: JobLogger) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if message.startswith(_IGNORED_MESSAGE_PREFIXES):
                return
            if record.levelno >= logging.ERROR:
                level = "error"
            elif record.levelno >= logging.WARNING:
                level = "warning"
            else:
                level = "info"
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                fields["exception"] = repr(record.exc_info[1])
            self._logger.emit(level, message, **fields)
        except Exception:
            self.handleError(record)


def configure_logging(logger: JobLogger, library_level: int = logging.WARNING) -> None:
    """Route standard-library logging and Python warnings through ``logger`` as JSON lines.

    Call this after importing mlflow, because importing it installs MLflow's own plain-text handler.
    """
    root = logging.getLogger()
    root.handlers = [JsonLogHandler(logger)]
    root.setLevel(library_level)
    for name in _LIBRARY_LOGGERS:
        library_logger = logging.getLogger(name)
        library_logger.handlers = []
        library_logger.propagate = True
        library_logger.setLevel(library_level)
    logging.captureWarnings(True)
