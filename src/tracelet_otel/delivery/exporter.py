"""The OpenTelemetry span exporter shared by every tracker backend.

``export`` decodes our span events back into records and appends them to a durable spool; a delivery worker
process (:mod:`tracelet_otel.delivery.worker`) sends them to the backend, with batching and retry. Success
means "on disk", never "maybe in memory".
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracelet_otel._child import Child
from tracelet_otel.delivery.counters import SPOOL_FULL_KEY, spool_counters
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import FINISHED_KEY, Delivery
from tracelet_otel.telemetry.events import decode_span_events

__all__ = ["TrackerSpanExporter"]

_logger = logging.getLogger("tracelet_otel.delivery")

FLUSH_POLL_S = 0.05


class TrackerSpanExporter(SpanExporter):  # type: ignore[misc]
    """Spools tracelet-otel records for one backend run and has a worker process deliver them.

    Args:
        spool_path: the sqlite spool; created if missing.
        delivery: the backend run to deliver to; None to continue a spool that already names one.
        max_spool_bytes: past this size, records are dropped and counted (reason ``spool full``).
    """

    def __init__(self, spool_path: str, delivery: Delivery | None = None, max_spool_bytes: int | None = None) -> None:
        self.spool = Spool(spool_path)
        self._max_spool_bytes = max_spool_bytes
        if delivery is not None:
            delivery.save(self.spool)
        self.backend = Delivery.load(self.spool).backend
        self._worker = Child([sys.executable, "-m", "tracelet_otel.delivery", spool_path], stdin=subprocess.PIPE)
        self._ready: dict[str, Any] | None = None
        self._shutdown = False

    def wait_ready(self, timeout: float = 120.0) -> dict[str, Any]:
        """The backend run (``{"run": reference, "url": ...}``) once the worker has opened it.

        Raises:
            RuntimeError: the worker could not open the run (bad configuration, unreachable backend).
        """
        if self._ready is None:
            message = self._worker.message(timeout)
            if "ready" not in message:
                self.shutdown()
                raise RuntimeError(f"tracelet-otel could not open the {self.backend} run: {message['error']}")
            self._ready = message["ready"]
        return self._ready

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            records = list(decode_span_events(spans))
            if self._max_spool_bytes is not None and self.spool.size() > self._max_spool_bytes:
                self._drop_full(len(records))
            else:
                self.spool.append(records)
        except Exception:
            _logger.exception("tracelet-otel: could not spool records for %s", self.backend)
            return SpanExportResult.FAILURE
        self._tell("wake")
        return SpanExportResult.SUCCESS

    def _drop_full(self, count: int) -> None:
        dropped = self.spool.get_meta(SPOOL_FULL_KEY) or 0
        if not dropped:
            _logger.warning("tracelet-otel: the %s spool reached max_spool_size; further records are counted as "
                            "dropped", self.backend)
        self.spool.set_meta(SPOOL_FULL_KEY, dropped + count)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Waits until the worker has delivered every spooled record."""
        deadline = time.monotonic() + timeout_millis / 1000
        while self.delivering() and time.monotonic() < deadline:
            time.sleep(FLUSH_POLL_S)
        return self.spool.count() == 0

    def delivering(self) -> bool:
        """Records are waiting and the worker is still there to send them."""
        return self._worker.process.poll() is None and self.spool.count() > 0

    def close(self, status: str = "FINISHED", timeout: float = 30.0) -> dict[str, Any]:
        """Deliver for up to ``timeout`` seconds, end the backend run with ``status``, and report counters."""
        if not self._shutdown:
            self._shutdown = True
            self._tell(f"finish {status} {timeout}")
            process = self._worker.process
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()  # type: ignore[union-attr]
            try:
                process.wait(timeout + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        report = {**spool_counters(self.spool).as_dict(),
                  "spooled": self.spool.total(), "undelivered": self.spool.count(),
                  "finished": self.spool.get_meta(FINISHED_KEY), "spool": self.spool.path,
                  "run": Delivery.load(self.spool).run}
        return report

    def shutdown(self) -> None:
        self.close()
        self.spool.close()

    def _tell(self, line: str) -> None:
        try:
            self._worker.process.stdin.write(line + "\n")  # type: ignore[union-attr]
            self._worker.process.stdin.flush()  # type: ignore[union-attr]
        except (BrokenPipeError, ValueError):  # the worker is gone; the spool keeps everything for replay
            pass
