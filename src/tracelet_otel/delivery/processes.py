"""The delivery processes of a parent that delivers many runs at once: the bridge, and ``tracelet-otel sync``.

A backend's spools are given to its delivery processes (``Take``): all of them to one process, whose threads
deliver them side by side, or, for a tracker whose SDK holds one run per process (``Backend.one_run_per_process``:
ClearML), one spool at a time to each of up to ``processes`` processes. There a spool waits for a free process,
in the order spools came; while spools wait, a process whose run has had its turn (``TURN_S``, or ``IDLE_S`` with
nothing left to deliver) and is not being ended is asked to let it go (``Release``): it closes the run after its
batch in flight, and the spool waits for its next turn if records are left (reopening an offline ClearML task
takes ~0.03 s).

A process says when it no longer delivers a spool (``Released``), and the spool is given again if anything is
left to do: records waiting, an end not done yet, or a message that came meanwhile. A process that dies is
replaced, and its spools are given again with what they were told, so nothing it was doing is lost.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tracelet_otel._backend import load_backend
from tracelet_otel._child import Child, Deliver, Ended, Failed, Finish, Message, Ready, Release, Released, Take
from tracelet_otel.delivery import postgres
from tracelet_otel.delivery.spool import open_spool

__all__ = ["RUN_PROCESSES", "DeliveryProcesses"]

_logger = logging.getLogger("tracelet_otel.delivery")

RUN_PROCESSES = 4  # processes of a one-run-per-process backend: ~160 MB each with ClearML loaded
TURN_S = 10.0  # how long a run keeps such a process while other runs wait for one
IDLE_S = 1.0  # how long a run with nothing to deliver keeps it then
START_TIMEOUT_S = 120.0
MESSAGE_WAIT_S = 60.0
RESTART_PAUSE_S = 5.0  # after a process that could not start, before the next one is started


class DeliveryProcesses:
    """The delivery processes of each backend (``--bridge``: they wait and retry rather than fail, and leave
    their runs open when they stop). ``on_message`` gets what they report (``Opened``, ``Ended``, ``Failed``).

    Raises:
        RuntimeError: a backend's first delivery process could not start (its package is broken).
    """

    def __init__(self, backends: Sequence[str], on_message: Callable[[str, Message], None],
                 processes: int = RUN_PROCESSES) -> None:
        self._stopping = threading.Event()
        self._pools = {name: _Pool(name, processes if load_backend(name).one_run_per_process else None, on_message,
                                   self._stopping) for name in backends}

    def tell(self, backend: str, message: Message) -> None:
        """``Deliver`` or ``Finish`` a spool: told to the process that delivers it, or kept until one does."""
        self._pools[backend].tell(message)

    def close(self, timeout: float) -> None:
        """Let every delivery process finish its batch and exit; runs stay open, spools keep what waits."""
        self._stopping.set()
        for pool in self._pools.values():
            pool.close(timeout)


@dataclass
class _Given:
    """A spool given to a process."""

    since: float
    finish: Finish | None = None  # the last end it was told to make
    ended: str | None = None  # the status the process said it ended the run with
    releasing: bool = False

    @property
    def ended_as_told(self) -> bool:
        """The run ended as it was told: the process lets the spool go next."""
        return self.finish is not None and self.ended == self.finish.status


@dataclass(eq=False)
class _Process:
    child: Child
    spools: dict[str, _Given]


class _Pool:
    """The delivery processes of one backend: one, delivering every spool, or up to ``processes`` delivering one
    spool each."""

    def __init__(self, backend: str, processes: int | None, on_message: Callable[[str, Message], None],
                 stopping: threading.Event) -> None:
        self._backend = backend
        self._one_run = processes is not None
        self._size = processes or 1
        self._on_message = on_message
        self._stopping = stopping
        self._lock = threading.Lock()
        self._waiting: dict[str, list[Message]] = {}  # spools no process delivers, in order, with what they were told
        self._processes: list[_Process] = []
        self._processes.append(self._start(wait=True))
        if self._one_run:
            threading.Thread(target=self._take_turns, name=f"tracelet-otel-turns-{backend}", daemon=True).start()

    def _start(self, wait: bool) -> _Process:
        """A new delivery process; ``wait``: for it to be ready, raising if it cannot start."""
        child = Child([sys.executable, "-m", "tracelet_otel.delivery", self._backend, "--bridge"])
        if wait:
            message = child.receive(START_TIMEOUT_S)
            if not isinstance(message, Ready):
                child.wait(0)
                reason = message.error if isinstance(message, Failed) else f"unexpected {message!r}"
                raise RuntimeError(f"the {self._backend} delivery process could not start: {reason}")
        process = _Process(child, {})
        threading.Thread(target=self._follow, args=(process, wait), name=f"tracelet-otel-delivery-{self._backend}",
                         daemon=True).start()
        return process

    def tell(self, message: Message) -> None:
        spool = getattr(message, "spool", None)
        assert spool is not None, message
        with self._lock:
            holder = self._holder(spool)
            if holder is not None and not holder.spools[spool].releasing:
                if isinstance(message, Finish):
                    holder.spools[spool].finish = message
                holder.child.send(message)
                return
            told = self._waiting.setdefault(spool, [])
            if message not in told:
                told.append(message)
            self._assign()

    def _holder(self, spool: str) -> _Process | None:
        return next((process for process in self._processes if spool in process.spools), None)

    def _assign(self) -> None:
        """Give waiting spools to processes with room."""
        for spool in list(self._waiting):
            if self._holder(spool) is not None:  # its process is still letting it go
                continue
            process = self._with_room()
            if process is None:
                break
            given = process.spools[spool] = _Given(time.monotonic())
            process.child.send(Take(spool))
            for message in self._waiting.pop(spool):
                if isinstance(message, Finish):
                    given.finish = message
                process.child.send(message)

    def _with_room(self) -> _Process | None:
        for process in self._processes:
            if not self._one_run or not process.spools:
                return process
        if any(given.ended_as_told for process in self._processes for given in process.spools.values()):
            return None  # one is about to be free: no process started for a moment's wait
        if len(self._processes) < self._size and not self._stopping.is_set():
            process = self._start(wait=False)  # it reads what it is told once it is up
            self._processes.append(process)
            return process
        return None

    def _take_turns(self) -> None:
        while not self._stopping.wait(1.0):
            try:
                self._end_turns()
            except Exception:  # a bug: turns must go on, or waiting runs starve
                _logger.exception("tracelet-otel: could not end the turns of the %s delivery processes", self._backend)

    def _end_turns(self) -> None:
        """While spools wait for a process, ask those whose turn is over to let their run go. Whether a run has
        records left is read outside the lock (a spool's count is a query), then checked again under it."""
        with self._lock:
            waiting = sum(1 for spool in self._waiting if self._holder(spool) is None)
            releasing = sum(given.releasing for process in self._processes for given in process.spools.values())
            now = time.monotonic()
            turns = sorted(((given.since, spool, given, process) for process in self._processes
                            for spool, given in process.spools.items()
                            if not given.releasing and given.finish is None and now - given.since >= IDLE_S),
                           key=lambda turn: turn[0])
        if waiting <= releasing:
            return
        over = [(spool, given, process) for since, spool, given, process in turns
                if now - since >= TURN_S or not _has_records(spool)]
        with self._lock:
            for spool, given, process in over[:waiting - releasing]:
                if process.spools.get(spool) is given and not given.releasing and given.finish is None:
                    given.releasing = True
                    process.child.send(Release(spool))

    def _follow(self, process: _Process, ready: bool) -> None:
        while True:
            message = process.child.receive(MESSAGE_WAIT_S)
            if isinstance(message, Ready):
                ready = True
            elif not isinstance(message, Failed) or message.spool is not None:
                self._received(process, message)
            elif not process.child.is_running():
                break
        if self._stopping.is_set():
            return
        _logger.error("tracelet-otel: the %s delivery process exited (%s); its runs go to a new one", self._backend,
                      message.error)
        if not ready:  # it could not start: the next one likely cannot either
            self._stopping.wait(RESTART_PAUSE_S)
        with self._lock:
            self._processes.remove(process)
            for spool, given in process.spools.items():
                if not self._give_again(spool, given, first=True) and _has_records(spool):  # rare: under the lock
                    self._waiting = {spool: [Deliver(spool)], **self._waiting}
            self._assign()

    def _received(self, process: _Process, message: Message) -> None:
        with self._lock:
            spool = getattr(message, "spool", "")
            given = process.spools.get(spool)
            if isinstance(message, Released):
                if given is None:
                    return
                del process.spools[spool]
                given_again = self._give_again(spool, given, first=False)
                self._assign()  # the process is free for the spool waiting longest
                if given_again:
                    return
            elif isinstance(message, Ended) and given is not None:
                given.ended = message.status
        if not isinstance(message, Released):
            self._on_message(self._backend, message)
        elif _has_records(spool):  # read outside the lock; a record appended since was told as any other
            self.tell(Deliver(spool))

    def _give_again(self, spool: str, given: _Given, first: bool) -> bool:
        """Have the spool given again if it was told something not done yet: after the spools waiting (the turn
        it let go), or before them (its process died). False if nothing was, and only its records may be left."""
        told = self._waiting.pop(spool, [])  # what came while it was being let go
        if given.finish is not None and not given.ended_as_told and given.finish not in told:
            told.insert(0, given.finish)
        if not told:
            return False
        if first:
            self._waiting = {spool: told, **self._waiting}
        else:
            self._waiting[spool] = told
        return True

    def close(self, timeout: float) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.child.end_input()
        for process in processes:
            process.child.wait(timeout)


def _has_records(location: str) -> bool:
    """Whether the spool holds records not delivered yet; True when it cannot be read (the database is away for
    a moment): a spool given again for nothing costs a look, one not given again would strand its records."""
    if not location.startswith(postgres.SCHEME) and not os.path.exists(location):
        return False
    try:
        spool = open_spool(location)
        try:
            return bool(spool.pending(1))
        finally:
            spool.close()
    except Exception as error:
        _logger.warning("tracelet-otel: could not read %s (%s); it is delivered again to be sure", location, error)
        return True
