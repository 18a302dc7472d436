"""Records <-> span events: the lossless encoding every route shares.

``decode`` takes plain ``(name, attributes)`` pairs, so it serves both an SDK ``ReadableSpan`` (in process) and an
OTLP request decoded elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel.telemetry import semconv

__all__ = ["decode", "decode_span_events", "encode"]

_KINDS = {semconv.EVENT_PREFIX + kind.value: kind for kind in RecordKind}


def encode(record: Record) -> tuple[str, dict[str, Any], int]:
    """The event name, attributes and timestamp (TensorBoard's wall time, in ns) of one record."""
    attributes: dict[str, Any] = {
        semconv.TAG: record.tag,
        semconv.STEP: record.step,
        semconv.WALL_TIME: record.wall_time,
        semconv.WRITER: record.writer,
    }
    if record.original_tag != record.tag:
        attributes[semconv.ORIGINAL_TAG] = record.original_tag
    if record.value is not None:
        attributes[semconv.VALUE] = record.value
    if record.blob is not None:
        attributes[semconv.BLOB_URI] = record.blob.uri
        attributes[semconv.BLOB_SHA256] = record.blob.sha256
        attributes[semconv.BLOB_MEDIA_TYPE] = record.blob.media_type
        attributes[semconv.BLOB_SIZE] = record.blob.size
    if record.filename:
        attributes[semconv.FILENAME] = record.filename
    if record.params:
        attributes[semconv.PARAMS] = json.dumps(dict(record.params), allow_nan=True)
    if record.rank is not None:
        attributes[semconv.RANK] = record.rank
    return semconv.EVENT_PREFIX + record.kind.value, attributes, int(record.wall_time * 1e9)


def decode(name: str, attributes: Mapping[str, Any]) -> Record | None:
    """The record an event carries, or None for events that are not ours."""
    kind = _KINDS.get(name)
    if kind is None or semconv.TAG not in attributes:
        return None
    blob = None
    if semconv.BLOB_URI in attributes:
        blob = Blob(uri=attributes[semconv.BLOB_URI], sha256=attributes[semconv.BLOB_SHA256],
                    media_type=attributes[semconv.BLOB_MEDIA_TYPE], size=int(attributes[semconv.BLOB_SIZE]))
    params = attributes.get(semconv.PARAMS)
    value = attributes.get(semconv.VALUE)
    return Record(
        kind=kind,
        tag=attributes[semconv.TAG],
        step=int(attributes[semconv.STEP]),
        wall_time=float(attributes[semconv.WALL_TIME]),
        writer=attributes.get(semconv.WRITER, ""),
        original_tag=attributes.get(semconv.ORIGINAL_TAG, attributes[semconv.TAG]),
        value=None if value is None else float(value),
        blob=blob,
        filename=attributes.get(semconv.FILENAME),
        params=json.loads(params) if params else None,
        rank=attributes.get(semconv.RANK),
    )


def decode_span_events(spans: Iterable[Any]) -> Iterator[Record]:
    """Records from SDK spans (``ReadableSpan``), in event order."""
    for span in spans:
        for event in span.events:
            record = decode(event.name, event.attributes or {})
            if record is not None:
                yield record
