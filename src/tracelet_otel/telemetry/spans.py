"""Records -> spans, built whole rather than through a tracer: the one way both the agent (``Emitter``) and the
``otlp`` backend make the spans that carry records.

A tracer would subject them to the user's observability settings: ``OTEL_TRACES_SAMPLER`` (a ratio sampler
would silently drop records) and ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` (it would cut tags and JSON short).
These spans are the record itself, not a sample of it, and their events' attributes are valid by
construction (``events.encode``): there is nothing for the SDK's sampling, limits or cleaning to do. Built
whole, a span costs one object per event, less than half of what ``Span.add_event`` spends per event.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, TraceFlags

from tracelet_otel.records import Record, SourcePosition
from tracelet_otel.telemetry import events, semconv
from tracelet_otel.version import __version__

__all__ = ["EVENTS_PER_SPAN", "SpanBuilder", "run_trace_id"]

EVENTS_PER_SPAN = 256

_SCOPE = InstrumentationScope("tracelet_otel", __version__)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def run_trace_id(run_id: str) -> int:
    """The one trace id of a run's spans on the collector route, the same from every process and attempt of the
    run: a collector's ``loadbalancing`` exporter routes by trace id by default, so all of a run reaches one
    bridge replica."""
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big") or 1


class SpanBuilder:
    """Ended spans of one resource, spanning their events' timestamps (TensorBoard's clock): each a new trace, or
    all in the one ``trace_id``."""

    def __init__(self, resource: Resource, trace_id: int | None = None) -> None:
        self._resource = resource
        self._ids = RandomIdGenerator()
        self._trace_id = trace_id

    def record_span(self, records: Sequence[Record], first_seq: int | None = None,
                    position: SourcePosition | None = None) -> ReadableSpan:
        """One span of records, an event each (at most ``EVENTS_PER_SPAN``, or the records of one TensorBoard event
        more). With ``first_seq`` every event also carries its record's sequence number (``tracelet.record.seq``:
        the first record's is ``first_seq``); with ``position`` the span says how far the records' source has been
        read (``tracelet.source``, ``tracelet.source.offset``)."""
        span_events = []
        for offset, record in enumerate(records):
            name, attributes, timestamp = events.encode(record)
            if first_seq is not None:
                attributes[semconv.RECORD_SEQ] = first_seq + offset
            span_events.append(Event(name, attributes, timestamp, limit=None))
        attributes = {} if position is None else {semconv.SOURCE: position.source,
                                                  semconv.SOURCE_OFFSET: position.offset}
        return self.span(semconv.SPAN_NAME, span_events, attributes)

    def span(self, name: str, span_events: Sequence[Event], attributes: dict[str, str | int] | None = None,
             ) -> ReadableSpan:
        times = [event.timestamp for event in span_events]
        context = SpanContext(self._trace_id or self._ids.generate_trace_id(), self._ids.generate_span_id(),
                              is_remote=False, trace_flags=_SAMPLED)
        return ReadableSpan(name, context, resource=self._resource, attributes=attributes, events=span_events,
                            start_time=min(times), end_time=max(times), instrumentation_scope=_SCOPE)
