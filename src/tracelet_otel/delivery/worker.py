"""The delivery process: drains spools of one backend into their backend runs, for a training job and for the
bridge alike.

``python -m tracelet_otel.delivery BACKEND [--bridge]``. Each tracker exporter of a job's agent starts one, for
its one spool; the bridge starts one per backend, for every run it receives, so the backend's SDK is imported
once however many jobs send (several for ClearML, whose SDK holds one task per process). Delivery has a core
of its own, the process that spools never imports the backend's SDK, and delivery outlives a crash of that
process.

Everything needed to deliver a spool is in the spool's meta (:class:`Delivery`): the backend, its options, and
the run to resume (none yet: the first delivery creates it and records it there, so a replay or the next bridge
resumes the same run). Each spool is delivered by a thread of its own, with the one :class:`Sender`, and speaks
the helper protocol of :mod:`tracelet_otel._child`: ``Deliver`` opens the spool's run if it is not open and
wakes its sender; ``Finish`` drains the spool (up to its timeout) and ends the run; ``Opened`` and ``Ended`` say
what happened. ``Finish`` with ``DISCARD`` undoes the run instead (``BackendRun.discard``).

A job and the bridge differ in what cannot be done at once, and in what the end of input means:

* for a job, a spool another process holds, or a run that cannot be opened, is ``Failed`` at once:
  ``start_logging`` must fail rather than wait. The end of input without ``Finish`` means the job's agent died:
  what was spooled is still delivered (up to ``ORPHAN_TIMEOUT_S``) and the run ended ``KILLED``. A spool is
  delivered once.
* for the bridge (``--bridge``), the lock is waited for (the previous bridge letting go) and opening the run is
  retried with backoff: records the collector was told are safe must reach their tracker. The process delivers
  the spools it was given (``Take``) until it lets each go (``Released``: its run ended, it was asked to
  ``Release`` it, or another replica took it over); the parent gives a spool again when there is more to do
  (:mod:`tracelet_otel.delivery.processes`). The end of input means the bridge stops: every sender stops after
  its batch, and the runs stay open for the next bridge.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from tracelet_otel._backend import BackendRun, BackendRunHandle, RunInfo, load_backend
from tracelet_otel._child import (
    Deliver,
    Ended,
    Failed,
    Finish,
    HelperChannel,
    Message,
    Opened,
    Ready,
    Release,
    Released,
    Take,
    become_helper,
    exit_helper,
)
from tracelet_otel._logging import OnceLogger
from tracelet_otel.delivery import postgres
from tracelet_otel.delivery.backoff import Backoff
from tracelet_otel.delivery.limit import ConcurrencyLimit
from tracelet_otel.delivery.sender import Sender
from tracelet_otel.delivery.spool import DeliverySpool, Lease, open_spool
from tracelet_otel.reports import RunStatus

__all__ = ["DELIVERY_KEY", "FINISHED_KEY", "Delivery", "main", "open_run"]

_logger = logging.getLogger("tracelet_otel.delivery")

DELIVERY_KEY = "delivery"  # spool meta: {"backend", "run", "options", "info"}
FINISHED_KEY = "finished"  # spool meta: the status the backend run was ended with
CREATING_KEY = "creating"  # spool meta: a backend run is being created and not recorded yet
CONTINUED_KEY = "continued"  # spool meta: the run is a restarted job's, found in the tracker
EVENT_FILES_KEY = "event_files"  # spool meta: {"root", "files"}, the captured writers' event files (the agent's)
END_KEY = "end"  # spool meta: a bridge run's end record from its job, {"status", "records"}
ORPHAN_TIMEOUT_S = 600.0
END_POLL_S = 0.5
SHARED_CHECK_S = 2.0  # how often a replica's delivery of a run checks its lease and looks for the run's end
T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    """What a spool is delivered to: a backend, its options, and its run (None until created)."""

    backend: str
    run: dict[str, Any] | None
    options: dict[str, Any]
    info: dict[str, Any]

    def save(self, spool: DeliverySpool) -> None:
        spool.set_meta(DELIVERY_KEY, {"backend": self.backend, "run": self.run, "options": self.options,
                                      "info": self.info})

    @classmethod
    def load(cls, spool: DeliverySpool) -> Delivery:
        return cls(**spool.get_meta(DELIVERY_KEY))


def recorded_end(spool: DeliverySpool) -> str | None:
    """The status a bridge run's end record asks for, once every record it names has arrived; else None."""
    end = spool.get_meta(END_KEY)
    if end is None or (end["records"] is not None and spool.received_through() < end["records"]):
        return None
    return str(end["status"])


def open_run(spool: DeliverySpool) -> BackendRun:
    """Resume the spool's backend run, or create it and record it in the spool.

    A ``resumable`` run (the user chose its id) continues the tracker's run of that id where the tracker has one
    (a restarted job whose spool is gone, on another machine): its records are numbered on from what that run
    stored, so that a backend that skips what it stored (``stored_through``) skips none of them.
    """
    delivery = Delivery.load(spool)
    backend = load_backend(delivery.backend)
    info = RunInfo(**delivery.info)
    if delivery.run is not None:
        return backend.open_run(info, delivery.options, resume=delivery.run)
    backend_run = None
    # A crash may have come between creating the run and recording it here.
    if info.resumable or spool.get_meta(CREATING_KEY):
        backend_run = backend.find_run(info, delivery.options)
        if backend_run is not None and info.resumable:
            spool.set_meta(CONTINUED_KEY, True)
    if backend_run is None:
        spool.set_meta(CREATING_KEY, True)
        backend_run = backend.open_run(info, delivery.options)
    if info.resumable:
        spool.number_after(backend_run.stored_through())
    replace(delivery, run=backend_run.reference).save(spool)
    return backend_run


class _SpoolDelivery(threading.Thread):
    """Delivers one spool: opens its run, runs its sender, and ends the run once asked to and drained."""

    def __init__(self, path: str, process: _DeliveryProcess) -> None:
        super().__init__(name=f"tracelet-otel-delivery-{path[-40:]}", daemon=True)
        self.path = path
        self._process = process
        self._shared = path.startswith(postgres.SCHEME)  # a replica's: its end and its lease are others' too
        self._wake = threading.Event()
        self._warnings = OnceLogger(_logger)
        self.finish: Finish | None = None  # asked for
        self.releasing = False  # asked to let the run go, unended
        self._let_go = False  # the run was ended, discarded or closed

    def wake(self) -> None:
        self._wake.set()

    def request_finish(self, finish: Finish) -> None:
        self.finish = finish
        self._wake.set()

    def request_release(self) -> None:
        self.releasing = True
        self._wake.set()

    def run(self) -> None:
        try:
            spool = self._attempt("open", lambda: open_spool(self.path), "")
            if spool is None:
                return
            try:
                # Between replicas that is how it should be: the one delivering the run goes on, this one waits to
                # take the run over should that one stop.
                lease = self._attempt("take the lock of", spool.try_lock,
                                      "another replica is delivering it" if self._shared else "another process is "
                                      "delivering it", logging.INFO if self._shared else logging.WARNING)
                if lease is None:
                    return
                try:
                    if not self._ended_elsewhere(spool):
                        # The lease is renewed before each attempt: opening may wait out a tracker outage longer
                        # than a lease lasts, and a replica that lost it must not create a second run.
                        backend_run = self._attempt("open the run of",
                                                    lambda: open_run(spool) if lease.renew() else None,
                                                    "another replica took it over meanwhile", logging.INFO)
                        if backend_run is not None:
                            self._deliver(spool, backend_run, lease)
                finally:
                    lease.close()
            finally:
                spool.close()
        finally:
            self._process.left(self)

    def _ended_elsewhere(self, spool: DeliverySpool) -> bool:
        """For the bridge: whether another replica, which held the lease meanwhile, already ended the run as
        asked and nothing waits. Then the run is not reopened, only reported ended."""
        finished = spool.get_meta(FINISHED_KEY)
        if not self._process.bridge or finished is None or spool.count():
            return False
        asked = self.finish.status if self.finish else recorded_end(spool)
        if asked not in (None, finished):
            return False
        self._ended(spool, finished)
        return True

    def _attempt(self, what: str, attempt: Callable[[], T | None], refusal: str,
                 level: int = logging.WARNING) -> T | None:
        """``attempt`` once for a job; for the bridge until it gives a value, backing off like the sender (its
        first ``refusal`` logged at ``level``). None if it never did (a job's failure is reported, the bridge
        stopped)."""
        backoff = Backoff()
        while not self._process.stopping.is_set() and not self.releasing:
            try:
                value, reason = attempt(), refusal
            except Exception as error:
                value, reason = None, f"{type(error).__name__}: {error}"
            if value is not None:
                return value
            if not self._process.bridge:
                self._process.channel.send(Failed(f"could not {what} {self.path}: {reason}", spool=self.path))
                return None
            self._warnings.log(level if reason == refusal else logging.WARNING, what,
                               "tracelet-otel bridge: could not %s %s (%s); retrying", what, self.path, reason)
            self._process.stopping.wait(backoff.next())
        return None

    def _deliver(self, spool: DeliverySpool, backend_run: BackendRun, lease: Lease) -> None:
        channel = self._process.channel
        channel.send(Opened(self.path, BackendRunHandle.of(self._process.backend, backend_run)))
        sender = Sender(spool, backend_run, self._process.limit)
        # Between replicas the end record may reach another one, and the lease may be lost; a single bridge's
        # runs are told both by its own Runs.
        checked = time.monotonic()
        try:
            while not self._process.stopping.is_set():
                self._wake.wait(END_POLL_S)
                self._wake.clear()
                sender.wake()
                if self.releasing:
                    return
                if self._shared and time.monotonic() - checked > SHARED_CHECK_S:
                    checked = time.monotonic()
                    if not lease.renew():
                        _logger.warning("tracelet-otel bridge: another replica took over %s", self.path)
                        return
                    if self.finish is None:  # the end may have reached another replica
                        status = recorded_end(spool)
                        self.finish = None if status is None else Finish(status, spool=self.path)
                finish = self.finish
                if finish is None:
                    continue
                if finish.status == RunStatus.DISCARD:
                    sender.stop()
                    self._discard(spool, backend_run)
                    return
                delivered = sender.drain(END_POLL_S if finish.timeout is None else finish.timeout)
                if delivered and self._end(spool, backend_run, finish.status):
                    return
                if finish.timeout is not None:  # a job's deadline: what is left waits for `tracelet-otel replay`
                    channel.send(Ended(self.path, None))
                    return
        finally:
            sender.stop()
            # Let go of the run however delivery stopped (asked to, the lease lost, an error): a process that
            # holds one run at a time must never open the next while this one is open.
            if self._process.bridge and not self._let_go:
                self._close(backend_run)

    def _end(self, spool: DeliverySpool, backend_run: BackendRun, status: str) -> bool:
        """End the backend run and record it in the spool; False if the backend could not be reached."""
        event_files = spool.get_meta(EVENT_FILES_KEY)
        if event_files:
            try:
                backend_run.keep_event_files(event_files["files"], event_files["root"])
            except Exception as error:  # the run's values are in; its files are a copy of what is on disk
                self._warnings.warning("event files", "tracelet-otel: could not give %s the run's event files: %s",
                                       backend_run.backend, error)
        try:
            backend_run.finish(status)
        except Exception as error:  # the backend went away at the last moment: retried, or replay ends the run
            self._warnings.warning("end", "tracelet-otel: could not end the %s run: %s", backend_run.backend, error)
            return False
        self._let_go = True
        self._ended(spool, status)
        return True

    def _close(self, backend_run: BackendRun) -> None:
        try:
            backend_run.close()
        except Exception as error:
            if self._process.one_run:  # the run may still be open here: the process's next run would meet it
                _logger.error("tracelet-otel: could not close the %s run (%s); the delivery process exits and "
                              "another takes its runs", backend_run.backend, error)
                exit_helper(1)
            self._warnings.warning("close", "tracelet-otel: could not close the %s run: %s", backend_run.backend,
                                   error)

    def _discard(self, spool: DeliverySpool, backend_run: BackendRun) -> None:
        """Undo the run ``start_logging`` gave up on; a run that holds an earlier attempt's data is ended
        ``KILLED`` instead, as that attempt left it."""
        earlier = spool.total() > 0 or spool.get_meta(CONTINUED_KEY)
        try:
            backend_run.finish(RunStatus.KILLED) if earlier else backend_run.discard()
            self._let_go = True
        except Exception as error:
            _logger.warning("tracelet-otel: could not undo the empty %s run: %s", backend_run.backend, error)
        self._ended(spool, RunStatus.KILLED if earlier else RunStatus.DISCARD)

    def _ended(self, spool: DeliverySpool, status: str) -> None:
        spool.set_meta(FINISHED_KEY, status)
        self._process.channel.send(Ended(self.path, status))


class _DeliveryProcess:
    def __init__(self, channel: HelperChannel, backend: str, bridge: bool) -> None:
        self.channel = channel
        self.backend = backend
        self.bridge = bridge
        self.stopping = threading.Event()
        self.limit = ConcurrencyLimit()  # one tracker, however many runs it delivers
        self.one_run = load_backend(backend).one_run_per_process
        self._deliveries: dict[str, _SpoolDelivery] = {}
        self._lock = threading.Lock()

    def command(self, message: Message) -> None:
        # A job's spool is delivered from its first message on; a bridge's from its Take (what comes for a spool
        # after its Released is the parent's, which gives the spool again if need be).
        start = isinstance(message, Take) or not self.bridge
        if isinstance(message, Take | Deliver):
            delivery = self._delivery(message.spool, start)
            if delivery is not None:
                delivery.wake()
        elif isinstance(message, Finish) and message.spool is not None:
            delivery = self._delivery(message.spool, start)
            if delivery is not None:
                delivery.request_finish(message)
        elif isinstance(message, Release):
            delivery = self._delivery(message.spool, start=False)
            if delivery is not None:
                delivery.request_release()
        else:
            _logger.error("tracelet-otel: the delivery process ignored %r", message)

    def _delivery(self, path: str, start: bool) -> _SpoolDelivery | None:
        """The spool's delivery, started if it is not running and ``start``; None for a job's spool delivered
        already."""
        with self._lock:
            delivery = self._deliveries.get(path)
            if delivery is None and start:
                delivery = self._deliveries[path] = _SpoolDelivery(path, self)
                delivery.start()
            elif delivery is not None and not delivery.is_alive():
                return None
            return delivery

    def left(self, delivery: _SpoolDelivery) -> None:
        """A spool's delivery ended; a bridge's process says so, and forgets the spool."""
        if not self.bridge:
            return
        with self._lock:
            del self._deliveries[delivery.path]
        if not self.stopping.is_set():
            self.channel.send(Released(delivery.path))

    def input_ended(self) -> None:
        """The parent stopped, or died (the module docstring says what each kind of process does then)."""
        if self.bridge:
            self.stopping.set()
        with self._lock:
            deliveries = list(self._deliveries.values())
        for delivery in deliveries:
            if delivery.finish is None and not self.bridge:
                delivery.request_finish(Finish(RunStatus.KILLED, ORPHAN_TIMEOUT_S, delivery.path))
        for delivery in deliveries:
            delivery.join()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tracelet_otel.delivery")
    parser.add_argument("backend")
    parser.add_argument("--bridge", action="store_true", help="deliver for the bridge (see the module docstring)")
    args = parser.parse_args(argv)
    channel = become_helper()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the sender reports outages once, itself
    try:
        load_backend(args.backend)  # a missing backend package is an error at start, not per spool
    except Exception as error:
        channel.send(Failed(f"{type(error).__name__}: {error}"))
        return 2
    channel.send(Ready())
    process = _DeliveryProcess(channel, args.backend, args.bridge)
    for message in channel.commands():
        process.command(message)
    process.input_ended()
    return 0
