"""Records -> ClearML calls: a pure function, no ClearML import, no I/O.

Every tag is split the way ClearML's own TensorBoard binding splits it: at its last ``/``, the part before is
the title (ClearML's *metric*), the part after the series (its *variant*); a tag without ``/`` is both
(``loss`` -> ``loss`` / ``loss``). The binding then joins the title's own parts with ``_``; we keep the ``/``
(``Loss/Train/CrossEntropy`` -> ``Loss/Train`` / ``CrossEntropy``), because ``_`` would merge ``a_b/c`` with
``a/b/c`` into one series.

Scalars keep their step as ClearML's iteration, and every scalar, plot and debug sample TensorBoard's wall time
(``wall_time``: ClearML's event timestamp, which would otherwise be the time of delivery). ClearML cannot store
NaN or +/-inf (its SDK would report them as 0.0, silently), so a non-finite scalar is not plotted: it becomes a
line in the task's console log that names the tag, the value and the step, and the run warns once per tag.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tracelet_otel.backends import Blob, ParamValue, Record, RecordKind, extension, payload_path

__all__ = [
    "ConnectHparams",
    "ReportConsole",
    "ReportHistogram",
    "ReportImage",
    "ReportMedia",
    "ReportPrCurve",
    "ReportScalar",
    "ReportText",
    "Translation",
    "UploadArtifact",
    "pr_curve_points",
    "title_series",
    "translate",
]

HPARAMS_SECTION = "TB_hparams"  # the hyperparameters section ClearML's own TensorBoard binding fills


@dataclass(frozen=True, slots=True)
class ReportScalar:
    title: str
    series: str
    iteration: int
    value: float
    wall_time: float


@dataclass(frozen=True, slots=True)
class ReportText:
    """A console-log line: ``message``, followed by the blob's UTF-8 text when there is one."""

    message: str
    blob: Blob | None = None


@dataclass(frozen=True, slots=True)
class ReportConsole:
    """A line of the training process's console, in the task's console (stderr at ERROR level)."""

    text: str
    stderr: bool
    wall_time: float


@dataclass(frozen=True, slots=True)
class ReportImage:
    """A debug sample, from the PNG TensorBoard encoded (never re-encoded)."""

    title: str
    series: str
    iteration: int
    blob: Blob
    wall_time: float


@dataclass(frozen=True, slots=True)
class ReportMedia:
    """A debug sample ClearML plays or shows as a file: audio (WAV), video (GIF)."""

    title: str
    series: str
    iteration: int
    blob: Blob
    wall_time: float
    extension: str


@dataclass(frozen=True, slots=True)
class ReportHistogram:
    """A bar plot of one TensorBoard histogram: the bars TensorBoard's own view draws (``Histogram.bars``)."""

    title: str
    series: str
    iteration: int
    blob: Blob
    wall_time: float


@dataclass(frozen=True, slots=True)
class ReportPrCurve:
    """A precision/recall line (the blob's JSON; see :func:`pr_curve_points`)."""

    title: str
    series: str
    iteration: int
    blob: Blob
    wall_time: float


@dataclass(frozen=True, slots=True)
class ConnectHparams:
    params: tuple[tuple[str, ParamValue], ...]
    section: str = HPARAMS_SECTION


@dataclass(frozen=True, slots=True)
class UploadArtifact:
    name: str  # unique within the task: uploading the same name again replaces the artifact
    blob: Blob
    filename: str


Call = (ReportScalar | ReportText | ReportConsole | ReportImage | ReportMedia | ReportHistogram | ReportPrCurve
        | ConnectHparams | UploadArtifact)


@dataclass
class Translation:
    calls: list[Call] = field(default_factory=list)
    non_finite: set[str] = field(default_factory=set)  # tags with a NaN or inf value, for one warning each


def title_series(tag: str) -> tuple[str, str]:
    title, slash, series = tag.rpartition("/")
    if not slash:
        return tag, tag
    return title or tag, series


def translate(records: Iterable[Record]) -> Translation:
    translation = Translation()
    for record in records:
        call = _call(record, translation)
        if call is not None:
            translation.calls.append(call)
    return translation


def _call(record: Record, translation: Translation) -> Call | None:
    kind, step = record.kind, record.step
    title, series = title_series(record.tag)
    if kind is RecordKind.SCALAR:
        if record.value is None:
            return None
        if not math.isfinite(record.value):
            translation.non_finite.add(record.tag)
            return ReportText(f"tracelet-otel: scalar {record.tag!r} is {record.value} at step {step} "
                              "(ClearML cannot plot NaN or inf; not plotted)")
        return ReportScalar(title, series, step, record.value, record.wall_time)
    if kind is RecordKind.CONSOLE:
        return ReportConsole(record.text or "", record.tag == "stderr", record.wall_time)
    if kind is RecordKind.HPARAMS and record.params:
        translation.calls.append(ConnectHparams(tuple(record.params.items())))
    blob = record.blob
    if blob is None:
        return None
    wall_time = record.wall_time
    if kind is RecordKind.IMAGE:
        return ReportImage(title, series, step, blob, wall_time)
    if kind in (RecordKind.AUDIO, RecordKind.VIDEO):
        return ReportMedia(title, series, step, blob, wall_time, extension(blob.media_type))
    if kind is RecordKind.TEXT:
        return ReportText(f"{record.tag} (step {step}): ", blob)
    if kind is RecordKind.HISTOGRAM:
        return ReportHistogram(title, series, step, blob, wall_time)
    if kind is RecordKind.PR_CURVE:
        return ReportPrCurve(title, series, step, blob, wall_time)
    return _artifact(record, blob)


def _artifact(record: Record, blob: Blob) -> UploadArtifact:
    path = payload_path(record)
    return UploadArtifact(path.path, blob, path.filename)


def pr_curve_points(curve: Mapping[str, list[float]]) -> list[list[float]]:
    """PR-curve JSON (one row per threshold) -> ``[recall, precision]`` points, as ClearML's scatter takes them;
    a threshold without a finite precision or recall has no point (a plot cannot hold NaN)."""
    return [[recall, precision] for recall, precision in zip(curve["recall"], curve["precision"], strict=True)
            if math.isfinite(recall) and math.isfinite(precision)]
