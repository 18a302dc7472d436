"""The neutral record: one captured TensorBoard value, whatever route it travelled.

Every stage speaks this type. The capture turns TensorBoard events into records, the OpenTelemetry layer
encodes them as span events and decodes them back (in process, or from an OTLP request in the bridge), and each
backend's translation is a pure function from records to that backend's calls.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Blob", "Record", "RecordKind", "ParamValue"]

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


@dataclass(frozen=True, slots=True)
class Blob:
    """A payload stored aside in the artifact store, referenced by URI and content hash."""

    uri: str
    sha256: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Record:
    """One value as TensorBoard wrote it.

    ``tag`` is already namespaced by writer (see ``docs/semantic-conventions.md``); ``original_tag`` is what the
    user passed. ``wall_time`` is TensorBoard's own, in seconds since the epoch. ``value`` is set for scalars (the
    float32 TensorBoard stored, widened exactly), ``blob`` for payloads, ``params`` for hparams.
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
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    rank: int | None = None

    def to_json(self) -> str:
        body: dict[str, Any] = {"kind": self.kind.value, "tag": self.tag, "step": self.step,
                                "wall_time": self.wall_time}
        for name in ("writer", "original_tag", "value", "filename", "rank"):
            value = getattr(self, name)
            if value is not None and value != "":
                body[name] = value
        if self.blob is not None:
            body["blob"] = [self.blob.uri, self.blob.sha256, self.blob.media_type, self.blob.size]
        if self.params:
            body["params"] = dict(self.params)
        return json.dumps(body, separators=(",", ":"), allow_nan=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Record:
        body = json.loads(text)
        body["kind"] = RecordKind(body["kind"])
        if "blob" in body:
            body["blob"] = Blob(*body["blob"])
        return cls(**body)
