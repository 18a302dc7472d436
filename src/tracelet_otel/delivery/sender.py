"""Delivers spooled records to one backend run: batching, retry with backoff, isolation of rejected records.

Written once for every backend; a backend only says how to deliver a batch, how to make it durable, and which
errors are permanent. Every batch first waits for its turn under the delivery process's
:class:`~tracelet_otel.delivery.limit.ConcurrencyLimit`, shared by the senders of all its runs. A batch is
marked delivered only after ``deliver`` and ``flush`` both returned (the contract in
:mod:`tracelet_otel.backends`). The counters live in the spool, so they survive the process.
"""

from __future__ import annotations

import logging
import threading
import time

from tracelet_otel._backend import BackendRun
from tracelet_otel._logging import OnceLogger
from tracelet_otel.delivery.backoff import Backoff
from tracelet_otel.delivery.counters import COUNTERS_KEY, DeliveryCounters
from tracelet_otel.delivery.limit import ConcurrencyLimit, Permit
from tracelet_otel.delivery.spool import DeliverySpool
from tracelet_otel.errors import PayloadMissing, RecordRejected
from tracelet_otel.records import Record
from tracelet_otel.reports import DropReason

__all__ = ["Sender"]

_logger = logging.getLogger("tracelet_otel.delivery")
_OUTAGE = "outage"  # the OnceLogger key of the warning that the backend is unavailable


class Sender:
    def __init__(self, spool: DeliverySpool, backend_run: BackendRun, limit: ConcurrencyLimit | None = None) -> None:
        """``limit``: shared with the other senders towards the same tracker; a sender alone gets its own."""
        self._spool = spool
        self._run = backend_run
        self._limit = limit or ConcurrencyLimit()
        self.counters = DeliveryCounters.from_dict(spool.get_meta(COUNTERS_KEY))
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._backoff = Backoff()
        self._warnings = OnceLogger(_logger)
        self._skip_stored()
        self._thread = threading.Thread(target=self._loop, name=f"tracelet-otel-{backend_run.backend}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty; False if the timeout came first. The spool is counted only once the
        sender found nothing to send: with a long backlog a count is a scan of it."""
        deadline = time.monotonic() + timeout
        self.wake()
        while time.monotonic() < deadline:
            if self._idle.wait(min(0.1, max(0.0, deadline - time.monotonic()))) and self._spool.count() == 0:
                return True
        return self._idle.is_set() and self._spool.count() == 0

    def stop(self) -> None:
        """Stop after the batch in flight; the counters are saved in the spool."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()
        self._save_counters()

    def _save_counters(self) -> None:
        self._spool.set_meta(COUNTERS_KEY, self.counters.as_dict())

    def _skip_stored(self) -> None:
        """Records a backend already stored before a crash, when sending them again would duplicate them."""
        if not self._run.resend_duplicates:
            return
        stored = self._run.stored_through()
        if stored > self._spool.delivered_seq():
            self.counters.add(delivered=self._spool.count(through_seq=stored))
            self._spool.mark_delivered(stored)
            self._save_counters()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                delivered = self._step()
            except Exception as error:  # reading the spool, a bug: the worker must go on delivering
                _logger.warning("tracelet-otel: delivery to %s failed unexpectedly (%s); retrying",
                                self._run.backend, _short(error), exc_info=True)
                delivered = False
            if delivered:
                self._backoff.reset()
            else:
                self._stopping.wait(self._backoff.next())

    def _step(self) -> bool:
        """Deliver one batch, or wait for records; False when delivery failed and should back off.

        The batch is read once its turn came: what arrived while it waited goes with it, so a busy tracker gets
        fewer, fuller batches."""
        first = self._spool.pending(1)
        if not first:
            self._idle.set()
            self._wake.wait(0.5)
            self._wake.clear()
            return True
        with self._limit.permit(first[0][1].wall_time) as permit:
            batch = self._spool.pending(self._run.max_batch)
            if not batch:  # delivered meanwhile by the process that took the spool over
                return True
            permit.judged = len(batch) >= self._run.max_batch
            try:
                return self._attempt(batch, permit)
            finally:
                self._save_counters()

    def _send(self, batch: list[tuple[int, Record]], permit: Permit) -> None:
        """Deliver ``batch`` and make it durable; raises what the backend raised."""
        try:
            self._run.deliver([record for _, record in batch], batch[-1][0])
            self._run.flush()
        except Exception as error:
            if not self._is_permanent(error):
                permit.failed()
            raise

    def _attempt(self, batch: list[tuple[int, Record]], permit: Permit) -> bool:
        try:
            self._send(batch, permit)
        except Exception as error:
            if not self._is_permanent(error):
                self.counters.add(retried=len(batch))
                self.counters.failed(_short(error))
                self._warnings.warning(_OUTAGE, "tracelet-otel: %s unavailable (%s); retrying with backoff, "
                                       "records wait in %s", self._run.backend, _short(error), self._spool.path)
                return False
            return self._isolate(batch, permit)
        self._spool.mark_delivered(batch[-1][0])
        self.counters.add(delivered=len(batch))
        if _OUTAGE in self._warnings:
            self._warnings.forget(_OUTAGE)
            _logger.warning("tracelet-otel: %s is back; delivering the records that waited", self._run.backend)
        return True

    def _isolate(self, batch: list[tuple[int, Record]], permit: Permit) -> bool:
        """A permanent error: deliver one at a time, so only the records the backend rejects are dropped.

        False when the backend became unavailable meanwhile: what is left is retried like any batch.
        """
        for seq, record in batch:
            try:
                self._send([(seq, record)], permit)
                self.counters.add(delivered=1)
            except Exception as error:
                if not self._is_permanent(error):
                    self.counters.add(retried=1)
                    self.counters.failed(_short(error))
                    return False
                reason = (DropReason.PAYLOAD_MISSING if isinstance(error, PayloadMissing)
                          else DropReason.rejected_by(self._run.backend, _short(error)))
                self.counters.drop(reason)
                _logger.warning("tracelet-otel: %s %r dropped, %s", record.kind.value, record.tag, reason)
            self._spool.mark_delivered(seq)
        return True

    def _is_permanent(self, error: BaseException) -> bool:
        """Retrying cannot help: the backend rejects the data, or a payload is gone from its store."""
        return isinstance(error, PayloadMissing | RecordRejected) or self._run.is_permanent(error)


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
