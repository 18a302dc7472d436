"""The OpenTelemetry span exporter shared by every tracker backend.

``export`` decodes our span events back into records and appends them to a durable spool, with how far their
source was read when the span says so (``tracelet.source``), in the same transaction; a delivery process
(:mod:`tracelet_otel.delivery.worker`) sends them to the backend, with batching and retry. Success means "on
disk", never "maybe in memory".
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracelet_otel._backend import BackendRunHandle
from tracelet_otel._child import Child, Deliver, Failed, Finish, Opened
from tracelet_otel._logging import OnceLogger
from tracelet_otel.delivery.counters import SPOOL_FULL_KEY, spool_counters
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import FINISHED_KEY, Delivery
from tracelet_otel.errors import RunNotStarted
from tracelet_otel.records import SourcePosition
from tracelet_otel.reports import DeliveryReport, DropReason, RunStatus
from tracelet_otel.telemetry import semconv
from tracelet_otel.telemetry.events import decode_span_events

__all__ = ["TrackerSpanExporter"]

_logger = logging.getLogger("tracelet_otel.delivery")

FLUSH_POLL_S = 0.05
OPEN_TIMEOUT_S = 120.0
CLOSE_GRACE_S = 30.0  # beyond the delivery timeout: ending the run, and the process's exit


class TrackerSpanExporter(SpanExporter):
    """Spools tracelet-otel records for one backend run and has a delivery process deliver them.

    Args:
        spool_path: the sqlite spool; created if missing.
        delivery: the backend run to deliver to; None to continue a spool that already names one.
        max_spool_bytes: while the records waiting for delivery take more than this, new ones are dropped and
            counted (reason ``spool full (max_spool_size)``).
    """

    def __init__(self, spool_path: str, delivery: Delivery | None = None, max_spool_bytes: int | None = None) -> None:
        self.spool = Spool(spool_path)
        self._max_spool_bytes = max_spool_bytes
        if delivery is not None:
            delivery.save(self.spool)
        self.backend = Delivery.load(self.spool).backend
        self._worker = Child([sys.executable, "-m", "tracelet_otel.delivery", self.backend])
        self._worker.send(Deliver(spool_path))
        self._run: BackendRunHandle | None = None
        self._shutdown = False
        self._closed_by = 0.0
        self._unspooled: Counter[str] = Counter()  # reason -> records the spool refused
        self._warnings = OnceLogger(_logger)

    def wait_ready(self, timeout: float = OPEN_TIMEOUT_S) -> BackendRunHandle:
        """The backend run, once the delivery process has opened it.

        Raises:
            RunNotStarted: the run could not be opened (bad configuration, unreachable backend).
        """
        deadline = time.monotonic() + timeout
        while self._run is None:
            message = self._worker.receive(max(0.0, deadline - time.monotonic()))
            if isinstance(message, Opened):
                self._run = message.run
            elif isinstance(message, Failed):
                self.shutdown()
                raise RunNotStarted(f"tracelet-otel could not open the {self.backend} run: {message.error}")
        return self._run

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        for span in spans:
            records = list(decode_span_events([span]))
            try:
                if self._max_spool_bytes is not None and self.spool.waiting_bytes() > self._max_spool_bytes:
                    self._drop_full(len(records))
                    records = []  # counted: the position still moves on, so that a replay offers them no more
                self.spool.append(records, _position(span))
            except Exception as error:  # a full disk, a broken spool: count what is lost, keep the agent going
                reason = DropReason.not_spooled(error)
                self._warnings.error(reason, "tracelet-otel: could not spool records for %s (%s); they are "
                                     "counted as dropped", self.backend, error)
                self._unspooled[reason] += len(records)
                return SpanExportResult.FAILURE
        self._worker.send(Deliver(self.spool.path))
        return SpanExportResult.SUCCESS

    def _drop_full(self, count: int) -> None:
        dropped = self.spool.get_meta(SPOOL_FULL_KEY) or 0
        if not dropped:
            _logger.warning("tracelet-otel: the %s spool reached max_spool_size; further records are counted as "
                            "dropped until delivery catches up", self.backend)
        self.spool.set_meta(SPOOL_FULL_KEY, dropped + count)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Waits until the delivery process has delivered every spooled record."""
        deadline = time.monotonic() + timeout_millis / 1000
        while self.delivering() and time.monotonic() < deadline:
            time.sleep(FLUSH_POLL_S)
        return self.spool.count() == 0

    def delivering(self) -> bool:
        """Records are waiting and the delivery process is still there to send them."""
        return self._worker.is_running() and self.spool.count() > 0

    def begin_close(self, status: str = RunStatus.FINISHED, timeout: float = 30.0) -> None:
        """Have the delivery process deliver for up to ``timeout`` seconds and end the backend run with
        ``status``; :meth:`wait_closed` waits for it."""
        if not self._shutdown:
            self._shutdown = True
            self._worker.send(Finish(status, timeout, self.spool.path))
            self._worker.end_input()
            self._closed_by = time.monotonic() + timeout + CLOSE_GRACE_S

    def wait_closed(self, timeout: float) -> bool:
        """Whether the delivery process is done, waiting up to ``timeout`` seconds; one past its deadline is
        killed (its spool keeps what it had not delivered)."""
        try:
            self._worker.process.wait(timeout)
        except subprocess.TimeoutExpired:
            if time.monotonic() < self._closed_by:
                return False
            self._worker.wait(0)
        return True

    def close(self, status: str = RunStatus.FINISHED, timeout: float = 30.0) -> DeliveryReport:
        """Deliver for up to ``timeout`` seconds, end the backend run with ``status``, and report counters."""
        self.begin_close(status, timeout)
        while not self.wait_closed(timeout + CLOSE_GRACE_S):
            pass
        return self.report()

    def report(self) -> DeliveryReport:
        """What was spooled, delivered, dropped and left, read from the spool."""
        counters = spool_counters(self.spool)
        for reason, count in self._unspooled.items():
            counters.drop(reason, count)
        return DeliveryReport(spooled=self.spool.total(), delivered=counters.delivered, retried=counters.retried,
                              dropped=counters.dropped, undelivered=self.spool.count(),
                              finished=self.spool.get_meta(FINISHED_KEY), spool=self.spool.path,
                              run=Delivery.load(self.spool).run)

    def discard(self) -> None:
        """Undo the backend run: ``start_logging`` failed before anything was captured."""
        self.close(RunStatus.DISCARD, 0.0)
        self.spool.close()

    def shutdown(self) -> None:
        self.close()
        self.spool.close()


def _position(span: ReadableSpan) -> SourcePosition | None:
    attributes = span.attributes or {}
    if semconv.SOURCE not in attributes:
        return None
    return SourcePosition(str(attributes[semconv.SOURCE]), int(attributes[semconv.SOURCE_OFFSET]))  # type: ignore[arg-type]
