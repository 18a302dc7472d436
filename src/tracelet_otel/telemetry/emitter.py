"""Emits records as OpenTelemetry data: span events (lossless) and metrics (live aggregates).

A span holds at most ``EVENTS_PER_SPAN`` events and is ended as soon as it is full or the capture goes idle:
only ended spans are exported, and a span past its event limit silently drops its OLDEST events. The provider
is built with a higher limit than we ever use, and every ended span is checked for ``dropped_events``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import SpanLimits

from tracelet_otel.records import Record, RecordKind
from tracelet_otel.telemetry import events, semconv
from tracelet_otel.version import __version__

__all__ = ["EVENTS_PER_SPAN", "SPAN_LIMITS", "Emitter"]

_logger = logging.getLogger("tracelet_otel.telemetry")

EVENTS_PER_SPAN = 256
SPAN_LIMITS = SpanLimits(max_events=EVENTS_PER_SPAN * 2, max_event_attributes=64, max_attribute_length=None)


class Emitter:
    def __init__(self, tracer_provider: trace.TracerProvider, meter_provider: metrics.MeterProvider) -> None:
        self._tracer = tracer_provider.get_tracer("tracelet_otel", __version__)
        meter = meter_provider.get_meter("tracelet_otel", __version__)
        # No step attribute: one series per (tag, writer), so dashboards show the latest value.
        self._scalar = meter.create_gauge(semconv.METRIC_SCALAR, description="Latest TensorBoard scalar per tag")
        self._records = meter.create_counter(semconv.METRIC_RECORDS, unit="{record}",
                                             description="Records captured from TensorBoard, by kind")
        self._span: Any = None
        self._events_in_span = 0
        # A gauge reports only its latest value, and a counter a sum: set them once per span, not per record.
        self._latest: dict[tuple[str, str], float] = {}
        self._counts: Counter[str] = Counter()
        self.dropped_events = 0

    def emit(self, records: Iterable[Record]) -> None:
        for record in records:
            if self._span is None:
                self._span = self._tracer.start_span(semconv.SPAN_NAME)
            name, attributes, timestamp = events.encode(record)
            self._span.add_event(name, attributes, timestamp)
            self._events_in_span += 1
            # The SDK refuses non-finite gauge values; the span event still carries them.
            if record.kind is RecordKind.SCALAR and record.value is not None and math.isfinite(record.value):
                self._latest[record.tag, record.writer] = record.value
            self._counts[record.kind.value] += 1
            if self._events_in_span >= EVENTS_PER_SPAN:
                self.end_span()

    def end_span(self) -> None:
        span, self._span, self._events_in_span = self._span, None, 0
        if span is None:
            return
        span.end()
        for (tag, writer), value in self._latest.items():
            self._scalar.set(value, {semconv.TAG: tag, semconv.WRITER: writer})
        for kind, count in self._counts.items():
            self._records.add(count, {"kind": kind})
        self._latest.clear()
        self._counts.clear()
        dropped = getattr(span, "dropped_events", 0)
        if dropped:  # cannot happen with SPAN_LIMITS; checked because it would lose data silently
            self.dropped_events += dropped
            _logger.error("tracelet-otel: a span dropped %d events", dropped)
