"""The bridge's delivery process for one backend: ``python -m tracelet_otel.bridge._deliverer BACKEND``.

It delivers many runs at once, each from its own spool with the job's own machinery (``open_run``, ``Sender``,
``end_run``), so the backend's SDK is imported once however many jobs send. It takes JSON lines on stdin:

* ``{"deliver": SPOOL}``: records were appended; the run is opened (created the first time, resumed after)
  if it is not open yet;
* ``{"end": SPOOL, "status": STATUS}``: deliver what waits, then end the backend run with STATUS.

and reports ``{"ready": BACKEND}`` once, then ``{"opened": SPOOL, "run": ..., "url": ...}`` and
``{"ended": SPOOL, "status": STATUS}`` per run. The end of
input means the bridge stops (or died): every sender stops after its batch, and the runs stay open; their
spools keep what waits, and the next bridge goes on from there.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, TypeVar

from tracelet_otel._child import become_helper, try_lock
from tracelet_otel.backends import BackendRun, load_backend
from tracelet_otel.delivery.counters import COUNTERS_KEY, DeliveryCounters
from tracelet_otel.delivery.sender import FIRST_BACKOFF_S, MAX_BACKOFF_S, Sender
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import end_run, open_run

__all__ = ["main"]

_logger = logging.getLogger("tracelet_otel.bridge")

END_POLL_S = 0.5
T = TypeVar("T")


class _Protocol:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            self._stream.write(json.dumps(message) + "\n")


class _RunDelivery(threading.Thread):
    """Delivers one spool until its run is ended and nothing waits, or until the process stops."""

    def __init__(self, path: str, deliveries: _Deliveries) -> None:
        super().__init__(name=f"tracelet-otel-bridge-{path[-40:]}", daemon=True)
        self.path = path
        self._deliveries = deliveries
        self._wake = threading.Event()
        self.end_status: str | None = None  # requested
        self.ended_status: str | None = None  # done

    def wake(self) -> None:
        self._wake.set()

    def end(self, status: str) -> None:
        self.end_status = status
        self._wake.set()

    def run(self) -> None:
        lock = self._retry("wait for the previous process to let go of", lambda: try_lock(self.path + ".lock"))
        if lock is None:
            return
        spool = Spool(self.path)
        try:
            backend_run = self._retry("open the run of", lambda: open_run(spool))
            if backend_run is not None:
                self._deliver(spool, backend_run)
        finally:
            spool.close()
            lock.close()
            self._deliveries.left(self)

    def _deliver(self, spool: Spool, backend_run: BackendRun) -> None:
        self._deliveries.protocol.send({"opened": self.path, "run": backend_run.reference, "url": backend_run.url})
        counters = DeliveryCounters.from_dict(spool.get_meta(COUNTERS_KEY))
        sender = Sender(spool, backend_run, counters)
        try:
            while not self._deliveries.stopping.is_set():
                self._wake.wait(END_POLL_S)
                self._wake.clear()
                sender.wake()
                status = self.end_status
                if status is not None and sender.drain(END_POLL_S) and end_run(spool, backend_run, status):
                    self.ended_status = status
                    self._deliveries.protocol.send({"ended": self.path, "status": status})
                    return  # a backend run may not take data once ended: a later record reopens it
        finally:
            sender.stop()
            spool.set_meta(COUNTERS_KEY, counters.as_dict())

    def _retry(self, what: str, attempt: Callable[[], T | None]) -> T | None:
        """``attempt`` until it gives a value, backing off like the sender; None if the process stops first."""
        backoff = 0.0
        while not self._deliveries.stopping.is_set():
            try:
                value = attempt()
            except Exception as error:
                log = _logger.debug if backoff else _logger.warning
                log("tracelet-otel bridge: could not %s %s (%s); retrying", what, self.path, error)
                value = None
            if value is not None:
                return value
            backoff = min(MAX_BACKOFF_S, backoff * 2 or FIRST_BACKOFF_S)
            self._deliveries.stopping.wait(backoff)
        return None


class _Deliveries:
    def __init__(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        self.stopping = threading.Event()
        self._running: dict[str, _RunDelivery] = {}
        self._lock = threading.Lock()

    def command(self, message: dict[str, Any]) -> None:
        path = message.get("deliver") or message["end"]
        with self._lock:
            delivery = self._running.get(path)
            if delivery is None:
                delivery = self._running[path] = _RunDelivery(path, self)
                delivery.start()
            if "end" in message:
                delivery.end(message["status"])
            else:
                delivery.wake()

    def left(self, delivery: _RunDelivery) -> None:
        """A run's delivery ended; records that arrived meanwhile get a fresh one (the run is reopened)."""
        with self._lock:
            if self._running.get(delivery.path) is delivery:
                del self._running[delivery.path]
            end_again = delivery.end_status if delivery.end_status != delivery.ended_status else None
        if self.stopping.is_set():
            return
        if end_again is not None:
            self.command({"end": delivery.path, "status": end_again})
        elif _waiting(delivery.path):
            self.command({"deliver": delivery.path})

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            running = list(self._running.values())
        for delivery in running:
            delivery.join()


def _waiting(path: str) -> bool:
    spool = Spool(path)
    try:
        return spool.count() > 0
    finally:
        spool.close()


def main(argv: list[str] | None = None) -> int:
    backend = (argv or sys.argv[1:])[0]
    protocol = _Protocol(become_helper())
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the sender reports outages once, itself
    try:
        load_backend(backend)  # a missing backend package is an error at the bridge's start, not per run
    except Exception as error:
        protocol.send({"error": f"{type(error).__name__}: {error}"})
        return 2
    protocol.send({"ready": backend})
    deliveries = _Deliveries(protocol)
    for line in sys.stdin:
        try:
            deliveries.command(json.loads(line))
        except (ValueError, KeyError, TypeError) as error:  # never let one odd line end delivery
            _logger.error("tracelet-otel bridge: ignored a control line %r: %s", line[:200], error)
    deliveries.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
