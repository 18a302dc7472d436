"""OTLP trace requests -> our records, per run: the bridge's half of the shared encoding.

The request is parsed by the generated classes of ``opentelemetry-proto``; each event goes through the same
``telemetry.events.decode`` the in-process route uses. A resource without ``tracelet.run_id`` holds no records
of ours: its spans are counted and skipped without looking at their events.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tracelet_otel.records import Record
from tracelet_otel.reports import DropReason, RunStatus
from tracelet_otel.telemetry import events, semconv

__all__ = ["RunBatch", "RunEnd", "TraceRequest", "decode_request"]

# A run id names a directory of the bridge: nothing that could climb out of it or hide in it.
_RUN_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


@dataclass(frozen=True)
class RunEnd:
    status: str
    records: int | None  # the sequence number of the run's last record; None when the job could not know it


@dataclass
class RunBatch:
    """What one request carries for one run."""

    run_id: str
    project: str | None
    experiment: str
    records: list[tuple[int, Record]] = field(default_factory=list)  # (the job's sequence number, record)
    unreadable: list[int] = field(default_factory=list)  # sequence numbers of our events that could not be read
    end: RunEnd | None = None


@dataclass
class TraceRequest:
    runs: dict[str, RunBatch] = field(default_factory=dict)
    skipped_spans: int = 0  # spans that are not ours
    refused: Counter[str] = field(default_factory=Counter)  # reason -> events or spans


_NESTED = frozenset({"array_value", "kvlist_value"})


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    # The bridge's hottest loop (a few attributes per record): a plain value is read here, without a call.
    attributes = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        attributes[pair.key] = getattr(value, kind) if kind and kind not in _NESTED else _value(value)
    return attributes


def decode_request(request: ExportTraceServiceRequest) -> TraceRequest:
    decoded = TraceRequest()
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        run_id = resource.get(semconv.RESOURCE_RUN_ID)
        spans = [span for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]
        if run_id is None:
            decoded.skipped_spans += len(spans)
            continue
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            decoded.refused[DropReason.INVALID_RUN_ID] += len(spans)
            continue
        batch = decoded.runs.get(run_id)
        if batch is None:
            project = resource.get(semconv.RESOURCE_PROJECT)
            batch = decoded.runs[run_id] = RunBatch(run_id, str(project) if project else None,
                                                    str(resource.get(semconv.RESOURCE_EXPERIMENT) or run_id))
        for span in spans:
            if span.name == semconv.SPAN_NAME:
                _read_records(span.events, batch, decoded.refused)
            elif span.name == semconv.RUN_SPAN_NAME:
                _read_end(span.events, batch, decoded.refused)
            else:
                decoded.skipped_spans += 1
    return decoded


def _read_records(span_events: Iterable[Any], batch: RunBatch, refused: Counter[str]) -> None:
    for event in span_events:
        attributes = _attributes(event.attributes)
        seq = attributes.get(semconv.RECORD_SEQ)
        if type(seq) is not int or seq < 1:
            refused[DropReason.WITHOUT_SEQUENCE] += 1
            continue
        try:
            record = events.decode(event.name, attributes)
        except (KeyError, TypeError, ValueError):
            record = None
        if record is None or not events.is_well_formed(record):
            refused[DropReason.UNREADABLE_EVENT] += 1
            batch.unreadable.append(seq)
        else:
            batch.records.append((seq, record))


def _read_end(span_events: Iterable[Any], batch: RunBatch, refused: Counter[str]) -> None:
    for event in span_events:
        attributes = _attributes(event.attributes)
        status, records = attributes.get(semconv.RUN_STATUS), attributes.get(semconv.RUN_RECORDS)
        if event.name != semconv.RUN_END_EVENT or status not in RunStatus.ENDINGS or not (
                records is None or type(records) is int):
            refused[DropReason.UNREADABLE_END] += 1
            continue
        batch.end = RunEnd(status, records)

