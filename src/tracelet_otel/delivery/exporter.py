"""The OpenTelemetry span exporter shared by every tracker backend.

``export`` decodes our span events back into records and spools them; a :class:`Sender` delivers them. Each
backend package subclasses :class:`TrackerSpanExporter` only to open its run.
"""

from __future__ import annotations

import logging
from typing import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracelet_otel.backends import BackendRun
from tracelet_otel.delivery.counters import DeliveryCounters
from tracelet_otel.delivery.sender import Sender
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.telemetry.events import decode_span_events

__all__ = ["TrackerSpanExporter"]

_logger = logging.getLogger("tracelet_otel.delivery")


class TrackerSpanExporter(SpanExporter):  # type: ignore[misc]
    def __init__(self, backend_run: BackendRun, spool: Spool) -> None:
        self.backend_run = backend_run
        self.spool = spool
        self.counters = DeliveryCounters()
        self._sender = Sender(spool, backend_run, self.counters)
        self._shutdown = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            spooled = self.spool.append(decode_span_events(spans))
        except Exception:
            _logger.exception("tracelet-otel: could not spool records for %s", self.backend_run.backend)
            return SpanExportResult.FAILURE
        self.counters.add(spooled=spooled)
        self._sender.wake()
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Waits until every spooled record is delivered."""
        return self._sender.drain(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            _logger.warning("tracelet-otel: exporter for %s already shut down", self.backend_run.backend)
            return
        self._shutdown = True
        self._sender.stop()
        self.spool.close()

    @property
    def undelivered(self) -> int:
        return self.spool.count()
