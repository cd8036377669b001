"""The ``log`` job: record a trained model, its params, metrics and datasets as one MLflow run.

The job is idempotent per ``idempotency_key``, which it stores as the run tag ``mlops.idempotency_key``.
A finished run with a logged model is returned as it is. An unfinished or failed run from an earlier
attempt is resumed: the job logs only what the run lacks, and MLflow's write-once params must match.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mlflow
import mlflow.data
import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
from mlflow.entities import LoggedModel, LoggedModelStatus, Run, RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.tracking import MlflowClient

from hotel_mlops.catalog_source import CatalogTableSource
from hotel_mlops.errors import InvalidInputError
from hotel_mlops.joblog import JobLogger
from hotel_mlops.spec import MLFLOW_MAX_DIGEST_LENGTH, DatasetRef, LogSpec

IDEMPOTENCY_TAG = "mlops.idempotency_key"
# Input tag that records the table version next to the dataset, as a string like every input tag.
TABLE_VERSION_TAG = "table_version"
# Input tag with the caller's full digest when it is longer than MLflow's digest field.
FULL_DIGEST_TAG = "digest"
# Input tag under which MLflow stores the context ("training", "testing") of a dataset input.
_CONTEXT_TAG = "mlflow.data.context"


@dataclass(frozen=True)
class _Dataset:
    ref: DatasetRef
    dataset: mlflow.data.dataset.Dataset
    tags: dict[str, str]


# Run artifact folder of the classification report and the plots.
EVALUATION_ARTIFACT_PATH = "evaluation"


def run_log(spec: LogSpec, log: JobLogger) -> dict[str, Any]:
    """Run the log job and return its result."""
    _check_local_inputs(spec)
    log = log.bind(idempotency_key=spec.idempotency_key)

    mlflow.set_tracking_uri(spec.tracking_uri)
    client = MlflowClient(tracking_uri=spec.tracking_uri)
    experiment_id = get_or_create_experiment(client, spec.experiment_name, spec.artifact_location, log)
    log = log.bind(experiment_id=experiment_id)

    runs = find_runs(client, experiment_id, spec.idempotency_key)
    if len(runs) > 1:
        log.warning(
            "Several runs carry this idempotency key, using the newest usable one",
            run_ids=[run.info.run_id for run in runs],
        )
    for run in runs:
        model = find_logged_model(client, experiment_id, run.info.run_id, spec.artifact_path)
        if run.info.status == RunStatus.to_string(RunStatus.FINISHED) and model is not None:
            log.info("A finished run already logged this model, reusing it", run_id=run.info.run_id)
            return _result(run, model, reused=True)

    if runs:
        run = runs[0]
        log.info("Resuming the run of an earlier attempt", run_id=run.info.run_id, status=run.info.status)
    else:
        # NOTE: search and create are two requests, so two jobs with the same key running at the same
        # time can both create a run. A later attempt then warns and resumes or reuses the newest one.
        tags = {**spec.tags, IDEMPOTENCY_TAG: spec.idempotency_key}
        run = client.create_run(experiment_id, run_name=spec.run_name, tags=tags)
        log.info("Created run", run_id=run.info.run_id, run_name=spec.run_name)

    run_id = run.info.run_id
    log = log.bind(run_id=run_id)
    datasets = _load_datasets(spec.datasets, log)
    mlflow.start_run(run_id=run_id)
    try:
        _log_params(run, spec.params)
        mlflow.set_tags({**spec.tags, IDEMPOTENCY_TAG: spec.idempotency_key})
        _log_datasets(run, datasets, log)
        for name, document in spec.json_artifacts.items():
            # Logging the same file again overwrites it, so a resumed run stays consistent.
            mlflow.log_dict(document, name)
        if spec.artifact_dir is not None:
            mlflow.log_artifacts(str(spec.artifact_dir), EVALUATION_ARTIFACT_PATH)
        model = find_logged_model(client, experiment_id, run_id, spec.artifact_path)
        if model is None:
            model = _log_model(client, spec, log)
        else:
            log.info("Run already has the logged model, keeping it", model_id=model.model_id)
        _log_metrics(run, spec.metrics, model, datasets)
    except BaseException:
        _end_run_as_failed(log)
        raise
    mlflow.end_run(status=RunStatus.to_string(RunStatus.FINISHED))
    log.info("Finished run", model_id=model.model_id)
    return _result(client.get_run(run_id), model, reused=False)


def _end_run_as_failed(log: JobLogger) -> None:
    try:
        mlflow.end_run(status=RunStatus.to_string(RunStatus.FAILED))
        log.warning("Marked run as FAILED, the next attempt resumes it")
    except Exception as error:
        # The original error matters more. The next attempt resumes the run whatever its status.
        log.warning("Could not mark run as FAILED", error=str(error))


def get_or_create_experiment(
    client: MlflowClient, name: str, artifact_location: str | None, log: JobLogger
) -> str:
    """Return the id of experiment ``name``, creating it when it does not exist.

    Two jobs may create the same experiment at once. The loser gets RESOURCE_ALREADY_EXISTS and reads
    the winner's experiment instead of failing.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            experiment_id = client.create_experiment(name, artifact_location=artifact_location)
            log.info("Created experiment", experiment_name=name, experiment_id=experiment_id)
            return experiment_id
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise InvalidInputError(
            f"Invalid spec: MLflow experiment {name!r} (id {experiment.experiment_id}) is deleted. "
            "Restore it in MLflow or set another experiment_name."
        )
    return experiment.experiment_id


def find_runs(client: MlflowClient, experiment_id: str, idempotency_key: str) -> list[Run]:
    """Return the runs that are not deleted and carry ``idempotency_key``, newest first."""
    # The spec parser rejects quotes in the key, so it can sit inside a quoted filter literal.
    filter_string = f"tags.`{IDEMPOTENCY_TAG}` = '{idempotency_key}'"
    runs: list[Run] = []
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time DESC"],
            page_token=page_token,
        )
        runs.extend(page)
        page_token = page.token
        if not page_token:
            return runs


def find_logged_model(client: MlflowClient, experiment_id: str, run_id: str, name: str) -> LoggedModel | None:
    """Return the newest READY logged model called ``name`` that run ``run_id`` produced, if any."""
    models = client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
    )
    for model in models:
        # A model left PENDING by a crashed upload is incomplete, so a resumed run logs a new one.
        if model.name == name and model.status == LoggedModelStatus.READY:
            return model
    return None


def _check_local_inputs(spec: LogSpec) -> None:
    problems = []
    if not (spec.model_dir / "MLmodel").is_file():
        problems.append(f"model_dir {spec.model_dir} contains no MLflow model (MLmodel file not found)")
    if spec.artifact_dir is not None and not spec.artifact_dir.is_dir():
        problems.append(f"artifact_dir {spec.artifact_dir} is not a folder")
    for index, ref in enumerate(spec.datasets):
        if not ref.path.is_file():
            problems.append(f"datasets[{index}].path {ref.path} does not exist")
    tag_key = spec.tags.get(IDEMPOTENCY_TAG)
    if tag_key is not None and tag_key != spec.idempotency_key:
        problems.append(
            f"tags.{IDEMPOTENCY_TAG} is {tag_key!r} but idempotency_key is {spec.idempotency_key!r}"
        )
    if problems:
        raise InvalidInputError(
            "Invalid input: " + "; ".join(problems) + ". Run the train job first and pass its paths."
        )


def _load_datasets(refs: tuple[DatasetRef, ...], log: JobLogger) -> list[_Dataset]:
    datasets = []
    for ref in refs:
        frame = pd.read_parquet(ref.path)
        tags = {TABLE_VERSION_TAG: str(ref.version)}
        digest = ref.digest
        if len(digest) > MLFLOW_MAX_DIGEST_LENGTH:
            # MLflow rejects longer digests. The prefix identifies the content, and the tag keeps it all.
            tags[FULL_DIGEST_TAG] = digest
            digest = digest[:MLFLOW_MAX_DIGEST_LENGTH]
        dataset = mlflow.data.from_pandas(
            frame,
            source=CatalogTableSource(table=ref.name, version=ref.version, path=str(ref.path)),
            name=ref.name,
            digest=digest,
        )
        log.info("Read dataset", dataset=ref.name, version=ref.version, rows=len(frame), context=ref.context)
        datasets.append(_Dataset(ref=ref, dataset=dataset, tags=tags))
    return datasets


def _log_params(run: Run, params: dict[str, Any]) -> None:
    """Log the params that the run lacks, and reject any that it already has with another value."""
    existing = run.data.params
    # MLflow stores every param value as str(value).
    new_params = {key: str(value) for key, value in params.items() if key not in existing}
    conflicts = [
        f"{key} is {existing[key]!r} in the run but {str(value)!r} in the spec"
        for key, value in params.items()
        if key in existing and existing[key] != str(value)
    ]
    if conflicts:
        raise InvalidInputError(
            f"Invalid spec: run {run.info.run_id} for this idempotency key already has other param "
            f"values ({'; '.join(conflicts)}). MLflow params are write-once, so use a new idempotency_key "
            "for a different configuration."
        )
    if new_params:
        mlflow.log_params(new_params)


def _log_datasets(run: Run, datasets: list[_Dataset], log: JobLogger) -> None:
    logged = {
        (entry.dataset.name, entry.dataset.digest, _input_context(entry))
        for entry in run.inputs.dataset_inputs
    }
    for entry in datasets:
        key = (entry.dataset.name, entry.dataset.digest, entry.ref.context)
        if key in logged:
            continue
        mlflow.log_input(entry.dataset, context=entry.ref.context, tags=entry.tags)
        log.info(
            "Logged dataset input",
            dataset=entry.ref.name,
            version=entry.ref.version,
            context=entry.ref.context,
        )


def _input_context(dataset_input: Any) -> str | None:
    for tag in dataset_input.tags:
        if tag.key == _CONTEXT_TAG:
            return tag.value
    return None


def _log_model(client: MlflowClient, spec: LogSpec, log: JobLogger) -> LoggedModel:
    started = time.monotonic()
    model_dir = str(spec.model_dir)
    saved = Model.load(model_dir)
    requirements = spec.model_dir / "requirements.txt"
    if "sklearn" not in saved.flavors:
        # The custom pyfunc model: log the same wrapper with the wheel it was saved with.
        info = mlflow.pyfunc.log_model(
            name=spec.artifact_path,
            python_model=mlflow.pyfunc.load_model(model_dir).unwrap_python_model(),
            code_paths=[str(wheel) for wheel in sorted((spec.model_dir / "code").glob("*.whl"))],
            signature=saved.signature,
            input_example=saved.load_input_example(model_dir),
            pip_requirements=str(requirements) if requirements.is_file() else None,
        )
        log.info("Logged model", model_id=info.model_id, duration_s=round(time.monotonic() - started, 3))
        return client.get_logged_model(info.model_id)

    pipeline = mlflow.sklearn.load_model(model_dir)
    flavor = saved.flavors.get("sklearn", {})
    info = mlflow.sklearn.log_model(
        sk_model=pipeline,
        name=spec.artifact_path,
        # Keep the saved folder's format, because MLflow's default depends on the tracking URI.
        serialization_format=flavor.get("serialization_format", mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS),
        skops_trusted_types=flavor.get("skops_trusted_types"),
        signature=saved.signature,
        input_example=saved.load_input_example(model_dir),
        # The train job pinned these, and reusing the file skips MLflow's requirement inference.
        pip_requirements=str(requirements) if requirements.is_file() else None,
    )
    log.info("Logged model", model_id=info.model_id, duration_s=round(time.monotonic() - started, 3))
    return client.get_logged_model(info.model_id)


def _log_metrics(run: Run, metrics: dict[str, float], model: LoggedModel, datasets: list[_Dataset]) -> None:
    """Log metrics that the run lacks or has with another value, linked to the model and test dataset."""
    existing = run.data.metrics
    new_metrics = {key: value for key, value in metrics.items() if existing.get(key) != value}
    if not new_metrics:
        return
    testing = [entry.dataset for entry in datasets if entry.ref.context == "testing"]
    # The train job computes the metrics on the test table, so link them to it when it is unambiguous.
    mlflow.log_metrics(
        new_metrics, model_id=model.model_id, dataset=testing[0] if len(testing) == 1 else None
    )


def _result(run: Run, model: LoggedModel, reused: bool) -> dict[str, Any]:
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_id": model.model_id,
        "model_uri": f"models:/{model.model_id}",
        "model_source": model.artifact_location,
        "artifact_uri": run.info.artifact_uri,
        "reused": reused,
    }
