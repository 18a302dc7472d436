"""Emits records as OpenTelemetry data: span events (lossless) and metrics (live aggregates).

Records go into spans of at most ``EVENTS_PER_SPAN`` events, one event a record (or the records of one
TensorBoard event more: a span holds whole events, so that it can say how far the capture journal has been read
after it); a span is handed to the span processor (and so exported) as soon as it is full or the capture goes
idle. Spans are built whole (``SpanBuilder.record_span``, as the ``otlp`` backend builds them): no sampler or
attribute limit of the environment applies to them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor

from tracelet_otel.records import Record, RecordKind, SourcePosition
from tracelet_otel.telemetry import semconv
from tracelet_otel.telemetry.spans import EVENTS_PER_SPAN, SpanBuilder
from tracelet_otel.version import __version__

__all__ = ["Emitter"]


class Emitter:
    def __init__(self, span_processor: SpanProcessor, resource: Resource,
                 meter_provider: metrics.MeterProvider) -> None:
        self._span_processor = span_processor
        self._spans = SpanBuilder(resource)
        meter = meter_provider.get_meter("tracelet_otel", __version__)
        # No step attribute: one series per (tag, writer), so dashboards show the latest value.
        self._scalar = meter.create_gauge(semconv.METRIC_SCALAR, description="Latest TensorBoard scalar per tag")
        self._captured = meter.create_counter(semconv.METRIC_RECORDS, unit="{record}",
                                              description="Records captured from TensorBoard, by kind")
        self._records: list[Record] = []
        self._position: SourcePosition | None = None
        # A gauge reports only its latest value, and a counter a sum: set them once per span, not per record.
        self._latest: dict[tuple[str, str], float] = {}
        self._counts: Counter[RecordKind] = Counter()

    def emit(self, records: Iterable[Record], position: SourcePosition | None = None) -> None:
        """Emit records; with ``position``, they are the records of one TensorBoard event and ``position`` says
        how far their source has been read after it, so they stay in one span."""
        for record in records:
            self._records.append(record)
            # The SDK refuses non-finite gauge values; the span event still carries them.
            if record.kind is RecordKind.SCALAR and record.value is not None and math.isfinite(record.value):
                self._latest[record.tag, record.writer] = record.value
            self._counts[record.kind] += 1
            if position is None and len(self._records) >= EVENTS_PER_SPAN:
                self.end_span()
        if position is not None:
            self._position = position
            if len(self._records) >= EVENTS_PER_SPAN:
                self.end_span()

    def end_span(self) -> None:
        """Export the records emitted so far (the capture went idle)."""
        if not self._records:
            return
        records, self._records = self._records, []
        position, self._position = self._position, None
        self._span_processor.on_end(self._spans.record_span(records, position=position))
        for (tag, writer), value in self._latest.items():
            self._scalar.set(value, {semconv.TAG: tag, semconv.WRITER: writer})
        for kind, count in self._counts.items():
            self._captured.add(count, {"kind": kind.value})
        self._latest.clear()
        self._counts.clear()
