"""The MLflow run that records are delivered to: executes the calls ``_translate`` produces."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from tracelet_otel.artifacts import local_path, read_blob
from tracelet_otel.backends import Backend, BackendRun, RunInfo
from tracelet_otel.records import Record
from tracelet_otel_mlflow._translate import LogArtifact, LogBatch, translate

__all__ = ["MlflowBackend", "MlflowRun"]

_logger = logging.getLogger("tracelet_otel.mlflow")

# A dead tracking server must not hang a call for minutes (MLflow's defaults: ~247 s). The sender retries.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_PERMANENT_ERROR_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}
MAX_PARAMS_PER_BATCH = 100


class MlflowRun(BackendRun):
    backend = "mlflow"
    max_batch = 1000  # MLflow's limit of metrics per log_batch

    def __init__(self, client: Any, run: Any, experiment_id: str) -> None:
        self._client = client
        self.run_id: str = run.info.run_id
        self._experiment_id = experiment_id
        self._params: dict[str, str] = dict(run.data.params)
        self._warned: set[str] = set()

    @property
    def reference(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self._client.tracking_uri}

    @property
    def url(self) -> str | None:
        uri = str(self._client.tracking_uri)
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/#/experiments/{self._experiment_id}/runs/{self.run_id}"
        return None

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        from mlflow.entities import Metric, Param

        translation = translate(records)
        for tag, name in translation.renamed.items():
            self._warn_once(tag, f"tracelet-otel: MLflow rejects the name {tag!r}; logged as {name!r}")
        for call in translation.calls:
            if isinstance(call, LogBatch):
                # MLflow takes 1000 entities a call, at most 100 of them params: metrics and params apart.
                if call.metrics:
                    self._client.log_batch(self.run_id, metrics=[
                        Metric(m.key, m.value, m.timestamp_ms, m.step) for m in call.metrics])
                params = [Param(k, v) for k, v in self._new_params(call.params)]
                for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
                    self._client.log_batch(self.run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
                self._params.update((p.key, p.value) for p in params)
            elif isinstance(call, LogArtifact):
                self._log_artifact(call)

    def _new_params(self, params: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """MLflow refuses to change a param: a second add_hparams with other values keeps the first ones."""
        new = []
        for key, value in params:
            logged = self._params.get(key)
            if logged is None:
                new.append((key, value))
            elif logged != value:
                self._warn_once("param:" + key, f"tracelet-otel: MLflow param {key!r} is already {logged!r}; "
                                f"{value!r} is kept in this add_hparams call's artifact under hparams/")
        return new

    def _log_artifact(self, call: LogArtifact) -> None:
        with tempfile.TemporaryDirectory(prefix="tracelet-mlflow-") as directory:
            target = os.path.join(directory, call.filename)
            source = local_path(call.blob)
            if source is not None:
                shutil.copyfile(source, target)
            else:
                with open(target, "wb") as file:
                    file.write(read_blob(call.blob))
            self._client.log_artifact(self.run_id, target, artifact_path=call.artifact_path)

    def is_permanent(self, error: BaseException) -> bool:
        return getattr(error, "error_code", None) in _PERMANENT_ERROR_CODES

    def finish(self, status: str) -> None:
        self._client.set_terminated(self.run_id, status)

    def discard(self) -> None:
        """MLflow's delete: the empty run leaves the run list (and can be restored from the UI's deleted runs)."""
        self._client.set_terminated(self.run_id, "FAILED")
        self._client.delete_run(self.run_id)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _logger.warning(message)


class MlflowBackend(Backend):
    """MLflow: experiment = ``project`` (created if missing; MLflow's ``Default`` without one), run name =
    ``exp_name``. The tracking URI is MLflow's own choice (``MLFLOW_TRACKING_URI``, else its default local
    store) unless the ``mlflow_tracking_uri`` option names one."""

    name = "mlflow"
    options: ClassVar[Mapping[str, type]] = {"mlflow_tracking_uri": str}

    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> MlflowRun:
        for variable, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(variable, value)
        from mlflow.tracking import MlflowClient

        tracking_uri = (resume or {}).get("tracking_uri") or options.get("mlflow_tracking_uri")
        client = MlflowClient(tracking_uri=tracking_uri)
        if resume:
            mlflow_run = client.get_run(resume["run_id"])
            return MlflowRun(client, mlflow_run, mlflow_run.info.experiment_id)
        experiment_id = _experiment_id(client, run.project or "Default")
        tags = {"tracelet.run_id": run.run_id, **_source_tags(run.source or {})}
        if run.rank is not None:
            tags["tracelet.rank"] = str(run.rank)
        mlflow_run = client.create_run(experiment_id, run_name=run.exp_name, tags=tags)
        return MlflowRun(client, mlflow_run, experiment_id)


def _source_tags(source: Mapping[str, Any]) -> dict[str, str]:
    """The tags ``mlflow.start_run`` would have set in the training process (``mlflow.utils.mlflow_tags``)."""
    from mlflow.entities import SourceType
    from mlflow.utils import mlflow_tags

    tags = {mlflow_tags.MLFLOW_SOURCE_TYPE: SourceType.to_string(SourceType.LOCAL)}
    for key, tag in (("program", mlflow_tags.MLFLOW_SOURCE_NAME), ("user", mlflow_tags.MLFLOW_USER),
                     ("git_commit", mlflow_tags.MLFLOW_GIT_COMMIT), ("git_branch", mlflow_tags.MLFLOW_GIT_BRANCH),
                     ("git_remote", mlflow_tags.MLFLOW_GIT_REPO_URL)):
        if source.get(key):
            tags[tag] = str(source[key])
    return tags


def _experiment_id(client: Any, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name))
    except MlflowException:  # another job created it meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)
