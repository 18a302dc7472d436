"""Records <-> attributes: the one lossless encoding of a record, wherever it is stored.

A record is its span event's name (``tensorboard.<kind>``) and attributes (``docs/semantic-conventions.md``).
The same attributes are what every other place keeps: the spool stores the ones every scalar has as columns and
the rest (:func:`optional_attributes`) as JSON, and the bridge reads them from OTLP ``AnyValue`` s. So
:func:`decode` serves an SDK ``ReadableSpan`` (in process), an OTLP request (the bridge) and a spool row alike,
and :func:`is_well_formed` is the one check of what arrived from outside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel.telemetry import semconv

__all__ = ["decode", "decode_span_events", "encode", "event_name", "is_well_formed", "optional_attributes"]

_KINDS = {semconv.EVENT_PREFIX + kind.value: kind for kind in RecordKind}


def event_name(kind: RecordKind) -> str:
    return semconv.EVENT_PREFIX + kind.value


def optional_attributes(record: Record) -> dict[str, Any]:
    """The attributes of what only some records have: everything but tag, step, wall time, writer and value."""
    attributes: dict[str, Any] = {}
    if record.original_tag != record.tag:
        attributes[semconv.ORIGINAL_TAG] = record.original_tag
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
    if record.text is not None:
        attributes[semconv.TEXT] = record.text
    return attributes


def encode(record: Record) -> tuple[str, dict[str, Any], int]:
    """The event name, attributes and timestamp (TensorBoard's wall time, in ns) of one record."""
    attributes: dict[str, Any] = {
        semconv.TAG: record.tag,
        semconv.STEP: record.step,
        semconv.WALL_TIME: record.wall_time,
        semconv.WRITER: record.writer,
    }
    if record.value is not None:
        attributes[semconv.VALUE] = record.value
    attributes.update(optional_attributes(record))
    return event_name(record.kind), attributes, int(record.wall_time * 1e9)


def decode(name: str, attributes: Mapping[str, Any]) -> Record | None:
    """The record an event carries, or None for events that are not ours.

    Raises:
        KeyError, TypeError, ValueError: an event of ours that lacks an attribute or has one it cannot read.
    """
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
        text=attributes.get(semconv.TEXT),
    )


def is_well_formed(record: Record) -> bool:
    """Every field of the type the backends expect: a record from outside (OTLP) that a backend could not
    translate would be retried forever."""
    if not all(isinstance(text, str) for text in (record.tag, record.original_tag, record.writer)):
        return False
    if not isinstance(record.filename, str | None) or not (record.rank is None or type(record.rank) is int):
        return False
    if not isinstance(record.text, str | None):
        return False
    blob = record.blob
    if blob is not None and not all(isinstance(text, str) for text in (blob.uri, blob.sha256, blob.media_type)):
        return False
    params = record.params
    return params is None or (isinstance(params, dict) and all(
        isinstance(key, str) and isinstance(value, str | int | float | bool) for key, value in params.items()))


def decode_span_events(spans: Iterable[Any]) -> Iterator[Record]:
    """Records from SDK spans (``ReadableSpan``), in event order."""
    for span in spans:
        for event in span.events:
            record = decode(event.name, event.attributes or {})
            if record is not None:
                yield record
