"""Delivers spooled records to one backend run: batching, retry with backoff, isolation of rejected records.

Written once for every backend; a backend only says how to deliver a batch, how to make it durable, and which
errors are permanent. A batch is marked delivered only after ``deliver`` and ``flush`` both returned (the
contract in :mod:`tracelet_otel.backends`).
"""

from __future__ import annotations

import logging
import threading
import time

from tracelet_otel.artifacts import PayloadMissing
from tracelet_otel.backends import BackendRun
from tracelet_otel.delivery.counters import COUNTERS_KEY, DeliveryCounters
from tracelet_otel.delivery.spool import Spool

__all__ = ["Sender"]

_logger = logging.getLogger("tracelet_otel.delivery")

MISSING_PAYLOAD = "payload missing from its store"
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0


class Sender:
    def __init__(self, spool: Spool, backend_run: BackendRun, counters: DeliveryCounters) -> None:
        self._spool = spool
        self._run = backend_run
        self._counters = counters
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._backoff = 0.0
        self._skip_stored()
        self._thread = threading.Thread(target=self._loop, name=f"tracelet-otel-{backend_run.backend}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty; False if the timeout came first."""
        deadline = time.monotonic() + timeout
        self.wake()
        while time.monotonic() < deadline:
            if self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic()))) and self._spool.count() == 0:
                return True
        return self._spool.count() == 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _skip_stored(self) -> None:
        """Records a backend already stored before a crash, when sending them again would duplicate them."""
        if not self._run.resend_duplicates:
            return
        stored = self._run.stored_through()
        if stored > self._spool.delivered_seq():
            self._counters.add(delivered=self._spool.count(through_seq=stored))
            self._spool.mark_delivered(stored)
            self._spool.set_meta(COUNTERS_KEY, self._counters.as_dict())

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delivered = self._step()
            except Exception as error:  # reading the spool, a bug: the worker must go on delivering
                _logger.warning("tracelet-otel: delivery to %s failed unexpectedly (%s); retrying",
                                self._run.backend, _short(error), exc_info=True)
                delivered = False
            if delivered:
                self._backoff = 0.0
            else:
                self._backoff = min(MAX_BACKOFF_S, self._backoff * 2 or FIRST_BACKOFF_S)
                self._stopping.wait(self._backoff)

    def _step(self) -> bool:
        """Deliver one batch, or wait for records; False when delivery failed and should back off."""
        batch = self._spool.pending(self._run.max_batch)
        if not batch:
            self._idle.set()
            self._wake.wait(0.5)
            self._wake.clear()
            return True
        return self._deliver(batch)

    def _deliver(self, batch: list[tuple[int, object]]) -> bool:
        try:
            return self._attempt(batch)
        finally:
            self._spool.set_meta(COUNTERS_KEY, self._counters.as_dict())

    def _attempt(self, batch: list[tuple[int, object]]) -> bool:
        records = [record for _, record in batch]
        try:
            self._run.deliver(records, batch[-1][0])  # type: ignore[arg-type]
            self._run.flush()
        except Exception as error:
            if not self._is_permanent(error):
                self._counters.add(retried=len(batch))
                # One warning per outage, not one per retry.
                log = _logger.debug if self._backoff else _logger.warning
                log("tracelet-otel: %s unavailable (%s); retrying with backoff, records wait in %s",
                    self._run.backend, _short(error), self._spool.path)
                return False
            return self._isolate(batch)
        self._spool.mark_delivered(batch[-1][0])
        self._counters.add(delivered=len(batch))
        if self._backoff:
            _logger.warning("tracelet-otel: %s is back; delivering the records that waited", self._run.backend)
        return True

    def _isolate(self, batch: list[tuple[int, object]]) -> bool:
        """A permanent error: deliver one at a time, so only the records the backend rejects are dropped.

        False when the backend became unavailable meanwhile: what is left is retried like any batch.
        """
        for seq, record in batch:
            try:
                self._run.deliver([record], seq)  # type: ignore[list-item]
                self._run.flush()
                self._counters.add(delivered=1)
            except Exception as error:
                if not self._is_permanent(error):
                    self._counters.add(retried=1)
                    return False
                reason = (MISSING_PAYLOAD if isinstance(error, PayloadMissing)
                          else f"rejected by {self._run.backend}: {_short(error)}")
                self._counters.drop(reason)
                _logger.warning("tracelet-otel: %s %r dropped, %s", getattr(record, "kind", ""),
                                getattr(record, "tag", ""), reason)
            self._spool.mark_delivered(seq)
        return True


    def _is_permanent(self, error: BaseException) -> bool:
        """Retrying cannot help: the backend rejects the data, or a payload is gone from its store."""
        return isinstance(error, PayloadMissing) or self._run.is_permanent(error)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
