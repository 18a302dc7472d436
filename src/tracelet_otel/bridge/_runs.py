"""The bridge's runs: a spool per run and backend under ``<spool-dir>/runs/<run id>/``, or in the PostgreSQL
database that bridge replicas share (``--state``; ``tracelet_otel.delivery.postgres``), and when each run ends.

A run's spools are created by the first record that names it, each with the run's ``Delivery`` (backend,
options, who the run is) and no backend run yet: the delivery process (``python -m tracelet_otel.delivery
BACKEND --bridge``, one per backend, several for ClearML) creates that once and records it in the spool, so a
restarted bridge finds it again. Records are appended once per sequence number (``Spool.append_new``), before
the request that carried them is acknowledged.

A run ends when the job's end record has come and every record up to the sequence number it names has arrived
(collectors retry and reorder; ``recorded_end``), or, with ``KILLED``, after a silence (records reaching any
replica count): then a later record opens it again. With replicas, the replica that holds a run's lease
delivers it and ends it, wherever its end record arrived.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tracelet_otel._backend import RunInfo
from tracelet_otel._child import Deliver, Ended, Finish, Message, Opened
from tracelet_otel.bridge._decode import RunBatch, RunEnd
from tracelet_otel.delivery import postgres
from tracelet_otel.delivery.counters import spool_counters
from tracelet_otel.delivery.processes import RUN_PROCESSES, DeliveryProcesses
from tracelet_otel.delivery.spool import DeliverySpool, open_spool
from tracelet_otel.delivery.worker import DELIVERY_KEY, END_KEY, FINISHED_KEY, Delivery, recorded_end
from tracelet_otel.layout import RUNS, RunDirectory
from tracelet_otel.records import Record
from tracelet_otel.reports import RunStatus

__all__ = ["Runs"]

_logger = logging.getLogger("tracelet_otel.bridge")


@dataclass
class _Run:
    run_id: str
    spools: dict[str, DeliverySpool]
    last_seen: float
    end: RunEnd | None
    ending: dict[str, str] = field(default_factory=dict)  # backend -> the status it was told to end the run with
    ended: set[str] = field(default_factory=set)  # backends whose run is ended and has nothing waiting
    delivered_before: int = 0  # by earlier bridges, or before the run was last forgotten

    def delivered(self) -> int:
        """Records of this run delivered since it was loaded."""
        return sum(spool_counters(spool).delivered for spool in self.spools.values()) - self.delivered_before


class Runs:
    def __init__(self, spool_dir: str, backend_options: Mapping[str, Mapping[str, Any]], silence_s: float,
                 state: str | None = None, processes: int = RUN_PROCESSES) -> None:
        """``state``: the PostgreSQL database (``postgresql://HOST:PORT/DATABASE``) the spools live in, shared
        with the other replicas; else they are files under ``spool_dir``. ``processes``: the delivery processes
        of a tracker whose SDK holds one run per process (``DeliveryProcesses``)."""
        self._directory = os.path.join(os.path.abspath(spool_dir), RUNS)
        self._state = state
        if state is None:
            os.makedirs(self._directory, exist_ok=True)
        self._backend_options = backend_options
        self._silence_s = silence_s
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._delivered_by_forgotten_runs = 0
        self._deliverers = DeliveryProcesses(list(backend_options), self._on_message, processes)

    def resume(self) -> int:
        """Take up the runs a previous bridge left unended or undelivered; returns how many."""
        with self._lock:
            for run_id in self._run_ids():
                self._take_up(run_id)
            return len(self._runs)

    def take_over_orphans(self) -> int:
        """With replicas: take up the runs that no replica delivers (their replica stopped or died: removed by a
        scale-down, its lease given back or expired) and that still wait for records' delivery or an end; a run
        that moved here brings its records itself. Returns how many were taken up."""
        assert self._state is not None
        with self._lock:
            orphans = {_run_id(f"{self._state}#{name}") for name in postgres.orphaned_spools(self._state)}
            taken = [run_id for run_id in sorted(orphans - set(self._runs)) if self._take_up(run_id)]
        if taken:
            _logger.info("tracelet-otel bridge: took over %d run(s) no replica was delivering: %s", len(taken),
                         ", ".join(taken))
        return len(taken)

    def _take_up(self, run_id: str) -> bool:
        run = self._load(run_id, None)
        if run is None:
            return False
        if run.ended == set(run.spools):
            self._forget(run)
            return False
        for backend in run.spools:
            self._deliverers.tell(backend, Deliver(run.spools[backend].path))
        self._end_if_complete(run)
        return True

    def accept(self, batch: RunBatch, admitted: list[tuple[int, Record]], refused: list[int]) -> int:
        """Spool the records of one run that were not spooled before; returns how many were new."""
        with self._lock:
            run = self._runs.get(batch.run_id) or self._load(batch.run_id, None)
            if run is None:
                if not admitted and batch.end is None:
                    return 0  # nothing to deliver and no end: no tracker run for a request that brought nothing
                run = self._load(batch.run_id, batch)
                assert run is not None
            stored = 0
            for backend, spool in run.spools.items():
                new = spool.append_new(admitted, refused)
                if batch.end is not None and spool.get_meta(END_KEY) is None:
                    spool.set_meta(END_KEY, dataclasses.asdict(batch.end))
                if new:
                    run.ended.discard(backend)  # more to deliver: the run is ended (again) afterwards
                    self._deliverers.tell(backend, Deliver(spool.path))
                stored = max(stored, new)
            run.last_seen = time.monotonic()
            if batch.end is not None and run.end is None:
                run.end = batch.end
                run.ended.clear()  # the job's own end replaces a KILLED after a silence
            self._end_if_complete(run)
            if run.ended == set(run.spools):
                self._forget(run)  # a resend for a run that is over
            return stored

    def _location(self, run_id: str, backend: str) -> str:
        if self._state is not None:
            return f"{self._state}#{run_id}/{backend}"
        return RunDirectory(os.path.join(self._directory, run_id)).spool(backend)

    def _run_ids(self) -> list[str]:
        if self._state is not None:
            return sorted({_run_id(f"{self._state}#{name}") for name in postgres.spool_names(self._state)})
        return sorted(os.listdir(self._directory))

    def _load(self, run_id: str, batch: RunBatch | None) -> _Run | None:
        """The run's spools; created from ``batch`` when the run is new. None for a directory that is no run."""
        if self._state is None:
            directory = os.path.join(self._directory, run_id)
            if batch is None and not os.path.isdir(directory):
                return None
            os.makedirs(directory, exist_ok=True)
        spools: dict[str, DeliverySpool] = {}
        for backend, options in self._backend_options.items():
            location = self._location(run_id, backend)
            if batch is None and self._state is None and not os.path.exists(location):
                continue
            spool = spools[backend] = open_spool(location)
            if spool.get_meta(DELIVERY_KEY) is None:
                if batch is None:  # created and left before the first record was in it
                    spools.pop(backend).close()
                    continue
                rank = next((record.rank for _, record in batch.records), None)
                info = RunInfo(run_id, batch.experiment, batch.project, rank)
                Delivery(backend, None, dict(options), dataclasses.asdict(info)).save(spool)
        if not spools:
            return None
        end = next((spool.get_meta(END_KEY) for spool in spools.values() if spool.get_meta(END_KEY)), None)
        run = _Run(run_id, spools, time.monotonic(), RunEnd(**end) if end else None)
        run.delivered_before = run.delivered()
        run.ended = {backend for backend, spool in spools.items()
                     if spool.get_meta(FINISHED_KEY) is not None and spool.count() == 0}
        self._runs[run_id] = run
        return run

    def _end_if_complete(self, run: _Run) -> None:
        if run.end is None:
            return
        for backend, spool in run.spools.items():
            if run.ending.get(backend) == run.end.status or backend in run.ended:
                continue
            if recorded_end(spool) is not None:  # else records the collector has yet to (re)send
                self._end(run, backend, run.end.status)

    def _end(self, run: _Run, backend: str, status: str) -> None:
        run.ending[backend] = status
        self._deliverers.tell(backend, Finish(status, spool=run.spools[backend].path))

    def end_silent_runs(self) -> None:
        """End the runs that have sent nothing for the silence: ``KILLED``, or as the job said when its end
        record came but records it names never did."""
        with self._lock:
            now = time.monotonic()
            for run in list(self._runs.values()):
                if now - run.last_seen < self._silence_s or self._heard_elsewhere(run, now):
                    continue
                for backend, spool in run.spools.items():
                    if backend in run.ending or backend in run.ended:
                        continue
                    if run.end is not None:
                        _logger.warning("tracelet-otel bridge: run %s ended, but records after %d of its %s never "
                                        "arrived", run.run_id, spool.received_through(), run.end.records)
                    else:
                        _logger.warning("tracelet-otel bridge: run %s sent nothing for %.0fs; ending it KILLED",
                                        run.run_id, self._silence_s)
                    self._end(run, backend, run.end.status if run.end else RunStatus.KILLED)

    def _heard_elsewhere(self, run: _Run, now: float) -> bool:
        """Whether the run's records reached another replica during the silence this one heard."""
        shared = [spool for spool in run.spools.values() if isinstance(spool, postgres.PostgresSpool)]
        if not shared:
            return False
        received = max((spool.received_at() or 0.0 for spool in shared), default=0.0)
        run.last_seen = max(run.last_seen, now - (time.time() - received))
        return now - run.last_seen < self._silence_s

    def _on_message(self, backend: str, message: Message) -> None:
        if isinstance(message, Opened):
            _logger.info("tracelet-otel bridge: run %s -> %s %s", _run_id(message.spool), backend,
                         message.run.url or message.run.run_id)
            return
        if not isinstance(message, Ended):
            return
        run_id = _run_id(message.spool)
        _logger.info("tracelet-otel bridge: run %s ended %s in %s", run_id, message.status, backend)
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return
            asked = run.ending.get(backend) or (run.end.status if run.end else None)
            if asked != message.status:
                return  # an end overtaken by a later one (the job's own end after a KILLED)
            run.ending.pop(backend, None)  # absent when another replica's end record ended it
            run.ended.add(backend)
            if run.ended == set(run.spools):
                self._forget(run)

    def _forget(self, run: _Run) -> None:
        """Nothing more to do for the run: its spools stay on disk, compacted, because they remember which
        records arrived (a collector may resend long after) and so keep a resend from starting a second run."""
        self._delivered_by_forgotten_runs += run.delivered()
        for spool in run.spools.values():
            try:
                spool.compact()
            except sqlite3.Error as error:  # busy or failing: the spool stays as large as it was, nothing is lost
                _logger.warning("tracelet-otel bridge: could not compact %s: %s", spool.path, error)
            spool.close()
        self._runs.pop(run.run_id, None)

    def waiting(self) -> int:
        """Records spooled and not delivered yet, over every run in progress."""
        with self._lock:
            return sum(spool.count() for run in self._runs.values() for spool in run.spools.values())

    def delivered(self) -> int:
        """Records this bridge delivered since it started."""
        with self._lock:
            return self._delivered_by_forgotten_runs + sum(run.delivered() for run in self._runs.values())

    def in_progress(self) -> int:
        with self._lock:
            return len(self._runs)

    def close(self, timeout: float) -> None:
        self._deliverers.close(timeout)
        with self._lock:
            for run in list(self._runs.values()):
                for spool in run.spools.values():
                    spool.close()
            self._runs.clear()


def _run_id(location: str) -> str:
    if location.startswith(postgres.SCHEME):
        return location.partition("#")[2].rpartition("/")[0]
    return RunDirectory(os.path.dirname(location)).run_id
