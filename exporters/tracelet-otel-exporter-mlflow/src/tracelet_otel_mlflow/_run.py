"""The MLflow run that records are delivered to: executes the calls ``_translate`` produces."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from tracelet_otel.backends import (
    Backend,
    BackendRun,
    OnceLogger,
    PayloadMissing,
    Record,
    RunInfo,
    RunStatus,
    read_blob,
    read_histogram,
    save_blob,
)
from tracelet_otel_mlflow._histogram_picture import histogram_pictures
from tracelet_otel_mlflow._image_view import IMAGES_FOLDER
from tracelet_otel_mlflow._translate import AppendConsole, LogArtifact, LogBatch, LogImage, translate

__all__ = ["MlflowBackend", "MlflowRun"]

_logger = logging.getLogger("tracelet_otel.mlflow")

# A dead tracking server must not hang a call for minutes (MLflow's defaults: ~247 s). The sender retries.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
_SQLITE = "sqlite:///"
_PERMANENT_ERROR_CODES = {"INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"}
MAX_PARAMS_PER_BATCH = 100
CONSOLE_LOG = "console.log"  # the artifact that holds the training process's console


class MlflowRun(BackendRun):
    backend = "mlflow"
    max_batch = 1000  # MLflow's limit of metrics per log_batch

    def __init__(self, client: Any, run: Any, experiment_id: str, histogram_images: bool = True,
                 system_metrics: Any = None) -> None:
        self._client = client
        self._system_metrics = system_metrics  # MLflow's SystemMetricsMonitor, when the option asks for one
        self._console: str | None = None  # this process's copy of the run's console.log
        self._run_id: str = run.info.run_id
        self._experiment_id = experiment_id
        self._params: dict[str, str] = dict(run.data.params)
        self._histogram_images = histogram_images
        self._images_tagged = False
        self._warnings = OnceLogger(_logger)

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def reference(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self._client.tracking_uri}

    @property
    def url(self) -> str | None:
        uri = str(self._client.tracking_uri)
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/#/experiments/{self._experiment_id}/runs/{self.run_id}"
        return None

    @property
    def location(self) -> str | None:
        """A local store's tracking URI: ``mlflow ui --backend-store-uri`` shows it."""
        return None if self.url else str(self._client.tracking_uri)

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_IMAGES

        translation = translate(records, histogram_images=self._histogram_images)
        for tag, name in translation.renamed.items():
            self._warnings.warning(tag, "tracelet-otel: MLflow rejects the name %r; logged as %r", tag, name)
        for tag, key in translation.renamed_images.items():
            self._warnings.warning(("image key", tag), "tracelet-otel: MLflow image keys take only ASCII letters, "
                                   "digits and '_-./ '; the images of %r are shown under the key %r", tag, key)
        # The batch's files go up in one log_artifacts call: a call per file costs about a millisecond more each.
        with tempfile.TemporaryDirectory(prefix="tracelet-mlflow-") as staging:
            images = False
            for call in translation.calls:
                if isinstance(call, LogBatch):
                    self._log_batch(call)
                elif isinstance(call, LogArtifact):
                    save_blob(call.blob, os.path.join(staging, call.artifact_path, call.filename))
                elif isinstance(call, LogImage):
                    images = self._stage_image(call, staging) or images
                elif isinstance(call, AppendConsole):
                    self._stage_console(call.lines, staging)
            if images and not self._images_tagged:  # the tag that makes MLflow's UI look for images at all
                self._client.set_tag(self.run_id, MLFLOW_LOGGED_IMAGES, True)
                self._images_tagged = True
            if os.listdir(staging):
                self._client.log_artifacts(self.run_id, staging)

    def _log_batch(self, call: LogBatch) -> None:
        from mlflow.entities import Metric, Param

        # MLflow takes 1000 entities a call, at most 100 of them params: metrics and params apart.
        if call.metrics:
            self._client.log_batch(self.run_id, metrics=[
                Metric(m.key, m.value, m.timestamp_ms, m.step) for m in call.metrics])
        params = [Param(k, v) for k, v in self._new_params(call.params)]
        for start in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=params[start : start + MAX_PARAMS_PER_BATCH])
        self._params.update((p.key, p.value) for p in params)

    def _new_params(self, params: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """MLflow refuses to change a param: a second add_hparams with other values keeps the first ones."""
        new = []
        for key, value in params:
            logged = self._params.get(key)
            if logged is None:
                new.append((key, value))
            elif logged != value:
                self._warnings.warning(("param", key), "tracelet-otel: MLflow param %r is already %r; %r is kept in "
                                       "this add_hparams call's artifact under hparams/", key, logged, value)
        return new

    def _stage_console(self, lines: Sequence[str], staging: str) -> None:
        """``console.log`` with the batch's lines added, whole: an MLflow artifact cannot be appended to. A
        reopened run first takes back the file it has."""
        if self._console is None:
            self._console = os.path.join(tempfile.mkdtemp(prefix="tracelet-mlflow-console-"), CONSOLE_LOG)
            if any(item.path == CONSOLE_LOG for item in self._client.list_artifacts(self.run_id)):
                self._client.download_artifacts(self.run_id, CONSOLE_LOG, os.path.dirname(self._console))
        with open(self._console, "a", encoding="utf-8") as file:
            file.write("".join(line + "\n" for line in lines))
        shutil.copyfile(self._console, os.path.join(staging, CONSOLE_LOG))

    def _stage_image(self, call: LogImage, staging: str) -> bool:
        """The files ``MlflowClient.log_image`` would write, under names that a resent batch writes again;
        False when the payload cannot be drawn."""
        try:
            if call.histogram:
                png, thumbnail = histogram_pictures(read_histogram(call.blob))
            else:
                png = read_blob(call.blob)
                thumbnail = _thumbnail(png)
        except PayloadMissing:  # the record is dropped, and counted
            raise
        except Exception as error:  # it cannot be drawn: retrying cannot help, and its artifact is delivered
            self._warnings.warning(("picture", call.key), "tracelet-otel: %r step %d is not in MLflow's image view "
                                   "(the payload could not be drawn: %s)", call.key, call.step, error)
            return False
        folder = os.path.join(staging, IMAGES_FOLDER)
        os.makedirs(folder, exist_ok=True)
        for suffix, data in ((".png", png), ("+compressed.webp", thumbnail)):
            with open(os.path.join(folder, call.file_stem + suffix), "wb") as file:
                file.write(data)
        return True

    def is_permanent(self, error: BaseException) -> bool:
        return getattr(error, "error_code", None) in _PERMANENT_ERROR_CODES

    def _forget_console(self) -> None:
        if self._console is not None:
            shutil.rmtree(os.path.dirname(self._console), ignore_errors=True)
            self._console = None

    def _stop_system_metrics(self) -> None:
        if self._system_metrics is not None:
            self._system_metrics.finish()  # logs what it sampled last, and stops its thread
            self._system_metrics = None

    def finish(self, status: str) -> None:
        self._stop_system_metrics()
        self._forget_console()
        self._client.set_terminated(self.run_id, status)

    def discard(self) -> None:
        """MLflow's delete: the empty run leaves the run list (and can be restored from the UI's deleted runs)."""
        self._stop_system_metrics()
        self._forget_console()
        self._client.set_terminated(self.run_id, RunStatus.FAILED)
        self._client.delete_run(self.run_id)


class MlflowBackend(Backend):
    """MLflow: experiment = ``project`` (created if missing; MLflow's ``Default`` without one), run name =
    ``exp_name``. The tracking URI is MLflow's own choice (``MLFLOW_TRACKING_URI``, else its default local
    store) unless the ``mlflow_tracking_uri`` option names one. ``mlflow_histogram_images`` (default True) adds
    a picture of every histogram to MLflow's image view.

    ``mlflow_system_metrics`` (unset: MLflow's own ``MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING``, off by default): the
    metrics ``mlflow.enable_system_metrics_logging()`` records (``system/cpu_utilization_percentage``,
    ``system/system_memory_usage_megabytes``, disk, network, and GPU where ``pynvml`` is installed), by MLflow's own
    ``SystemMetricsMonitor``, every 10 s (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``). They are the machine's, as
    MLflow's are: MLflow measures no process of its own. Not on replay: the training is over.
    """

    name = "mlflow"
    options: ClassVar[Mapping[str, type]] = {"mlflow_tracking_uri": str, "mlflow_histogram_images": bool,
                                             "mlflow_system_metrics": bool}

    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> MlflowRun:
        for variable, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(variable, value)

        tracking_uri = (resume or {}).get("tracking_uri") or options.get("mlflow_tracking_uri")
        client = _client(tracking_uri)
        histogram_images = options.get("mlflow_histogram_images")
        histogram_images = True if histogram_images is None else histogram_images
        if resume:
            mlflow_run = client.get_run(resume["run_id"])
            if mlflow_run.info.status != "RUNNING":  # continued, as mlflow.start_run(run_id=...) does
                client.update_run(mlflow_run.info.run_id, status="RUNNING")
            return MlflowRun(client, mlflow_run, mlflow_run.info.experiment_id, histogram_images)
        experiment_id = _experiment_id(client, run.project or "Default")
        tags = {"tracelet.run_id": run.run_id, **_source_tags(run.source or {})}
        if run.rank is not None:
            tags["tracelet.rank"] = str(run.rank)
        mlflow_run = client.create_run(experiment_id, run_name=run.exp_name, tags=tags)
        return MlflowRun(client, mlflow_run, experiment_id, histogram_images,
                         _system_metrics(options.get("mlflow_system_metrics"), mlflow_run.info.run_id,
                                         client.tracking_uri))

    def find_run(self, run: RunInfo, options: Mapping[str, Any]) -> MlflowRun | None:
        """The run tagged with our run id in the run's experiment, the latest if several."""

        client = _client(options.get("mlflow_tracking_uri"))
        experiment = client.get_experiment_by_name(run.project or "Default")
        if experiment is None or not re.fullmatch(r"[\w.-]+", run.run_id):  # nothing to quote in the filter
            return None
        found = client.search_runs([experiment.experiment_id], f"tags.`tracelet.run_id` = '{run.run_id}'",
                                   max_results=1, order_by=["attributes.start_time DESC"])
        if not found:
            return None
        return self.open_run(run, options, resume={"run_id": found[0].info.run_id, "tracking_uri": client.tracking_uri})


def _system_metrics(wanted: bool | None, run_id: str, tracking_uri: str) -> Any:
    """MLflow's own system-metrics monitor for the run, started, when asked for (or MLflow's own switch is on)."""
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING

    if not (MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get() if wanted is None else wanted):
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def _thumbnail(png: bytes) -> bytes:
    """The thumbnail log_image makes (``mlflow.tracking.multimedia``), encoded at WebP's fastest."""
    from mlflow.tracking.multimedia import compress_image_size
    from PIL import Image

    buffer = io.BytesIO()
    compress_image_size(Image.open(io.BytesIO(png))).save(buffer, format="WEBP", method=0)
    return buffer.getvalue()


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


def _client(tracking_uri: str | None) -> Any:
    """A client of the store, whose tables exist. MLflow creates a sqlite store's tables on first use, and
    processes doing so at once fail ("table experiments already exists"): every rank of ``torchrun
    --nproc-per-node 4`` does on a first run, against the default ``sqlite:///mlflow.db``. So the first use of a
    sqlite store is taken in turns, under a lock on its directory (a lock on no file of the user's)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    if not uri.startswith(_SQLITE):
        return MlflowClient(tracking_uri=uri)
    directory = os.path.dirname(os.path.abspath(uri[len(_SQLITE) :])) or "."
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # the tables are created here, if they are not there
    finally:
        os.close(descriptor)  # and the lock with it
    return client


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
