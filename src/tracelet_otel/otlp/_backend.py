"""The otlp backend: records travel as our span events over OTLP, to a collector that routes them on.

The run's records become spans exactly as the agent emits them (``SpanBuilder.record_span``), all in the run's
one trace (``run_trace_id``: what a collector's ``loadbalancing`` exporter routes by), at most ``EVENTS_PER_SPAN``
a span, each event with its sequence number in the run's spool (``tracelet.record.seq``), so that
a receiver stores a record sent twice once. ``finish`` sends the run's end as an event of its own. An export
that fails raises: the spool keeps the records and the sender retries them with backoff.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from tracelet_otel._backend import Backend, BackendRun, RunInfo
from tracelet_otel.errors import BackendUnavailable
from tracelet_otel.otlp._exporter import OPTIONS, OtlpSettings, export_errors
from tracelet_otel.records import Record
from tracelet_otel.telemetry import semconv
from tracelet_otel.telemetry.providers import make_resource
from tracelet_otel.telemetry.spans import EVENTS_PER_SPAN, SpanBuilder, run_trace_id

__all__ = ["OtlpBackend", "OtlpRun"]


class OtlpRun(BackendRun):
    backend = "otlp"
    max_batch = 4 * EVENTS_PER_SPAN

    def __init__(self, run: RunInfo, settings: OtlpSettings) -> None:
        self._run_id = run.run_id
        self._settings = settings
        self._exporter = settings.exporter()
        self._spans = SpanBuilder(make_resource(run.project, run.exp_name, run.run_id), run_trace_id(run.run_id))
        self._errors = export_errors()
        # The sequence number of the last record sent, for the end record. Unknown when a replay found nothing
        # left to send; the end record then says nothing and the receiver ends the run once it delivered all.
        self._last_seq: int | None = None

    @property
    def run_id(self) -> str:
        """Our run id: the receiver behind the collector keys the run by it."""
        return self._run_id

    @property
    def reference(self) -> dict[str, Any]:
        return {"run_id": self._run_id, "endpoint": self._settings.endpoint, "protocol": self._settings.protocol}

    @property
    def url(self) -> str | None:
        return None

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        # The spool's sequence numbers are contiguous (AUTOINCREMENT; rows leave only once delivered), so the
        # batch's first record is through_seq - len + 1.
        first_seq = through_seq - len(records) + 1
        spans = [self._spans.record_span(records[start : start + EVENTS_PER_SPAN], first_seq + start)
                 for start in range(0, len(records), EVENTS_PER_SPAN)]
        self._export(spans, f"{len(records)} records")
        self._last_seq = max(self._last_seq or 0, through_seq)

    def finish(self, status: str) -> None:
        attributes: dict[str, Any] = {semconv.RUN_STATUS: status}
        if self._last_seq is not None:
            attributes[semconv.RUN_RECORDS] = self._last_seq
        end = Event(semconv.RUN_END_EVENT, attributes, time.time_ns())
        self._export([self._spans.span(semconv.RUN_SPAN_NAME, [end])], "the end of the run")
        self._exporter.shutdown()

    def discard(self) -> None:
        """Nothing was sent, so the receiver has no run to undo."""
        self._exporter.shutdown()

    def _export(self, spans: list[ReadableSpan], what: str) -> None:
        self._errors.take()
        if self._exporter.export(spans) is not SpanExportResult.SUCCESS:
            reason = self._errors.take() or "no reason given"
            raise BackendUnavailable(f"{self._settings.target} did not accept {what}: {reason}")


class OtlpBackend(Backend):
    """OTLP to a collector: ``otlp_*`` options, else the standard ``OTEL_EXPORTER_OTLP_*`` variables."""

    name = "otlp"
    options: ClassVar[Mapping[str, type]] = OPTIONS

    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> OtlpRun:
        # Nothing is contacted here: a collector that is down at start must not stop training from starting.
        return OtlpRun(run, OtlpSettings.resolve(options))
