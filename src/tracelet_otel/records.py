"""The neutral record: one captured TensorBoard value, whatever route it travelled.

Every stage speaks this type. The capture turns TensorBoard events into records, the OpenTelemetry layer
encodes them as span events and decodes them back (from an SDK span, or from any OTLP request), and each
backend's translation is a pure function from records to that backend's calls.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["Blob", "ParamValue", "Record", "RecordKind", "SourcePosition"]

ParamValue = str | float | int | bool


class RecordKind(str, enum.Enum):
    """What a record holds; the value is the suffix of its span event name (``tensorboard.<kind>``)."""

    SCALAR = "scalar"
    HISTOGRAM = "histogram"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TEXT = "text"
    GRAPH = "graph"
    HPARAMS = "hparams"
    PR_CURVE = "pr_curve"
    EMBEDDING = "embedding"
    MESH = "mesh"
    CUSTOM_SCALARS = "custom_scalars"
    TENSOR = "tensor"
    CONSOLE = "console"  # a line the training process wrote to stdout or stderr (the tag), in ``text``


class Blob(NamedTuple):
    """A payload stored aside in the artifact store, referenced by URI and content hash."""

    uri: str
    sha256: str
    media_type: str
    size: int


class Record(NamedTuple):
    """One value as TensorBoard wrote it.

    ``tag`` is already namespaced by writer (see ``docs/semantic-conventions.md``); ``original_tag`` is what the
    event file holds. ``wall_time`` is TensorBoard's own, in seconds since the epoch. ``value`` is set for
    scalars (the float32 TensorBoard stored, widened exactly), ``blob`` for payloads, ``params`` for hparams,
    ``text`` for console lines.

    A NamedTuple rather than a frozen dataclass: every record is built three times on its way (capture,
    span-event decode, spool read), and construction is ~8x cheaper.
    """

    kind: RecordKind
    tag: str
    step: int
    wall_time: float
    writer: str = ""
    original_tag: str = ""
    value: float | None = None
    blob: Blob | None = None
    filename: str | None = None
    params: Mapping[str, ParamValue] | None = None
    rank: int | None = None
    text: str | None = None


class SourcePosition(NamedTuple):
    """How far a source of records has been read: the capture journal, or one event file."""

    source: str  # "journal", or an event file's path relative to its run's logdir
    offset: int  # bytes: every record the source holds before it has been read
    fingerprint: str = ""  # a hash of the source's first record: a file rewritten since is told apart
