"""Records -> MLflow calls: a pure function, no MLflow import, no I/O.

Name rule (MLflow accepts ``^[/\\w.\\- :]*$``, at most 250 characters, as a normalised relative path): each other
character becomes ``_``; an empty path segment becomes ``_`` and a ``.``/``..`` segment ``_``/``__`` (so
``a//b`` is ``a/_/b`` and never merges with ``a/b``); an empty name is ``_``; a name still over 250 characters
keeps its first 241 and ends in ``-`` and 8 hex digits of the original's sha256. Valid tags are kept verbatim.

Image keys (MLflow's image view, ``MlflowClient.log_image(key=...)``) accept less: ASCII letters, digits and
``_-./ `` only, and the key is part of a file name. So an image key is the name above with every other character
as ``_``, and one over 160 characters keeps its first 151 and ends in ``-`` and 8 hex digits, as above.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tracelet_otel.backends import Blob, Record, RecordKind, payload_path
from tracelet_otel_mlflow._image_view import image_file_stem

__all__ = ["HISTOGRAM_IMAGE_PREFIX", "AppendConsole", "LogArtifact", "LogBatch", "LogImage", "MetricPoint",
           "Translation", "mlflow_image_key", "mlflow_name", "translate", "translate_metrics"]

MAX_NAME_LENGTH = 250
# An image key is part of a file name (at most 255 bytes) that also holds step, timestamp, id and suffix.
MAX_IMAGE_KEY_LENGTH = 160
_INVALID_CHARACTER = re.compile(r"[^/\w.\- :]")
_INVALID_IMAGE_KEY_CHARACTER = re.compile(r"[^a-zA-Z0-9_\-./ ]")
# Pictures of histograms are keyed like the folder of their JSON artifacts: histograms/<tag>.
HISTOGRAM_IMAGE_PREFIX = "histograms/"


@dataclass(frozen=True, slots=True)
class MetricPoint:
    key: str
    value: float
    timestamp_ms: int
    step: int


@dataclass(frozen=True, slots=True)
class LogBatch:
    metrics: tuple[MetricPoint, ...] = ()
    params: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LogArtifact:
    blob: Blob
    artifact_path: str  # the folder in the run's artifacts
    filename: str


@dataclass(frozen=True, slots=True)
class LogImage:
    """One image in MLflow's image view (the run's "Model metrics" tab: a chart per key with a step slider).

    Stored as ``MlflowClient.log_image(key=, step=, timestamp=)`` stores it (``_image_view``). Where log_image
    ends the file name in a random uuid, ours ends in 16 hex digits of the payload's hash, so a batch sent again
    after a crash writes the same files instead of a second image for the same step.
    """

    blob: Blob  # the PNG; for a histogram, TensorBoard's buckets (JSON) to draw
    key: str
    step: int
    timestamp_ms: int
    histogram: bool = False

    @property
    def file_stem(self) -> str:
        return image_file_stem(self.key, self.step, self.timestamp_ms, self.blob.sha256[:16])


@dataclass(frozen=True, slots=True)
class AppendConsole:
    """Lines of the training process's console, for the run's ``console.log`` artifact (stdout and stderr
    interleaved as they were written)."""

    lines: tuple[str, ...]


Call = LogBatch | LogArtifact | LogImage | AppendConsole


@dataclass
class Translation:
    calls: list[Call] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # original tag -> MLflow name, for one warning each
    renamed_images: dict[str, str] = field(default_factory=dict)  # original tag -> image key, likewise


@functools.lru_cache(maxsize=65536)  # a run's tags repeat at every step
def mlflow_name(name: str) -> str:
    if len(name) <= MAX_NAME_LENGTH and not _INVALID_CHARACTER.search(name) and _is_normalised(name):
        return name
    segments = [_INVALID_CHARACTER.sub("_", segment) for segment in name.split("/")]
    mapped = "/".join({"": "_", ".": "_", "..": "__"}.get(segment, segment) for segment in segments)
    return _shortened(mapped, name, MAX_NAME_LENGTH)


def mlflow_image_key(name: str) -> str:
    """The key of ``name``'s images in MLflow's image view (the module docstring has the rule)."""
    key = _INVALID_IMAGE_KEY_CHARACTER.sub("_", mlflow_name(name))  # one character for one: still normalised
    return _shortened(key, name, MAX_IMAGE_KEY_LENGTH)


def _shortened(mapped: str, original: str, limit: int) -> str:
    """Over ``limit``: cut, and end in a hash of the original, so that long names stay apart."""
    if len(mapped) <= limit:
        return mapped
    digest = hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return mapped[: limit - 9] + "-" + digest


def _is_normalised(name: str) -> bool:
    return name != "" and all(segment not in ("", ".", "..") for segment in name.split("/"))


def timestamp_ms(wall_time: float) -> int:
    return int(wall_time * 1000)


def translate(records: Iterable[Record], *, histogram_images: bool = True) -> Translation:
    """The MLflow calls for ``records``: one ``LogBatch`` first (metrics and params), then per payload its
    artifact and, for images and (with ``histogram_images``) histograms, its image in MLflow's image view."""
    translation = Translation()
    metrics: list[MetricPoint] = []
    params: dict[str, str] = {}

    def name(tag: str) -> str:
        mapped = mlflow_name(tag)
        if mapped != tag:
            translation.renamed[tag] = mapped
        return mapped

    def image_key(tag: str, prefix: str = "") -> str:
        key = mlflow_image_key(prefix + tag)
        if key != prefix + tag:
            translation.renamed_images[tag] = key
        return key

    console: list[str] = []
    for record in records:
        if record.kind is RecordKind.CONSOLE:
            console.append(record.text or "")
            continue
        if record.kind is RecordKind.SCALAR and record.value is not None:
            metrics.append(MetricPoint(name(record.tag), record.value, timestamp_ms(record.wall_time), record.step))
            continue
        if record.kind is RecordKind.HPARAMS:
            for key, value in (record.params or {}).items():
                params[name(key)] = str(value)
        if record.blob is None:
            continue
        translation.calls.append(_artifact(record, name))
        if record.kind is RecordKind.IMAGE:
            translation.calls.append(LogImage(record.blob, image_key(record.tag), record.step,
                                              timestamp_ms(record.wall_time)))
        elif record.kind is RecordKind.HISTOGRAM and histogram_images:
            translation.calls.append(LogImage(record.blob, image_key(record.tag, HISTOGRAM_IMAGE_PREFIX),
                                              record.step, timestamp_ms(record.wall_time), histogram=True))
    if metrics or params:
        translation.calls.insert(0, LogBatch(tuple(metrics), tuple(params.items())))
    if console:
        translation.calls.append(AppendConsole(tuple(console)))
    return translation


def _artifact(record: Record, name: Callable[[str], str]) -> LogArtifact:
    assert record.blob is not None
    folder, filename = payload_path(record, tag=name)
    return LogArtifact(record.blob, folder, filename)


def translate_metrics(metrics_data: Any, step: int) -> list[MetricPoint]:
    """OpenTelemetry metric points -> MLflow metrics: one key per instrument and attribute set.

    Gauges and sums give their value, keyed ``<name>/<attribute>:<value>,...``; histograms give
    ``<name>.count`` and ``<name>.sum``. The step is the export number, so the MLflow chart shows one point
    per export interval.
    """
    points: list[MetricPoint] = []
    for resource_metrics in metrics_data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    suffix = ",".join(f"{k}:{v}" for k, v in sorted((point.attributes or {}).items()))
                    key = metric.name + (f"/{suffix}" if suffix else "")
                    time_ms = point.time_unix_nano // 1_000_000
                    if hasattr(point, "value"):
                        points.append(MetricPoint(mlflow_name(key), float(point.value), time_ms, step))
                    else:
                        count = float(point.count)
                        points.append(MetricPoint(mlflow_name(key + ".count"), count, time_ms, step))
                        points.append(MetricPoint(mlflow_name(key + ".sum"), float(point.sum), time_ms, step))
    return points
