import json
import logging
import warnings

from hotel_mlops.joblog import JobLogger, configure_logging, redact


def read_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_log_line_is_one_json_object(capsys):
    JobLogger(job="train").bind(run_id="r1").info("Fitted\npipeline", rows=3, ratio=float("nan"))

    lines = read_lines(capsys.readouterr().err)

    assert lines == [
        {
            "level": "info",
            "msg": "Fitted\npipeline",
            "job": "train",
            "run_id": "r1",
            "rows": 3,
            "ratio": "nan",
        }
    ]


def test_stdout_stays_empty(capsys):
    JobLogger().warning("Disk almost full")

    assert capsys.readouterr().out == ""


def test_redact_removes_url_credentials_and_tokens(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "dapi-secret-value")

    text = redact("GET http://alice:pa55@127.0.0.1:5000/api failed with token dapi-secret-value")

    assert "pa55" not in text
    assert "alice" not in text
    assert "dapi-secret-value" not in text
    assert "http://***@127.0.0.1:5000/api" in text


def test_error_fields_are_redacted(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-long")

    JobLogger().error("Login failed", detail="password hunter2-long rejected")

    line = read_lines(capsys.readouterr().err)[0]
    assert line["detail"] == "password *** rejected"


def test_library_logs_and_warnings_become_json(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(JobLogger(job="log"))
        logging.getLogger("mlflow.store").warning("Slow query took %d ms", 1500)
        logging.getLogger("mlflow.store").info("Ignored below WARNING")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("Deprecated option", DeprecationWarning, stacklevel=1)
    finally:
        root.handlers, root.level = saved
        logging.captureWarnings(False)

    lines = read_lines(capsys.readouterr().err)

    assert lines[0] == {
        "level": "warning",
        "msg": "Slow query took 1500 ms",
        "job": "log",
        "logger": "mlflow.store",
    }
    assert len(lines) == 2
    assert lines[1]["logger"] == "py.warnings"
    assert "Deprecated option" in lines[1]["msg"]
