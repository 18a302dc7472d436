"""``tracelet-otel status [SPOOL_DIR]``: the runs in a spool directory, in progress and left over, read from
their files alone (nothing is contacted, nothing changes).

For each run: whether an agent is delivering it now (beside training, or a replay) or it is left over; the
values captured and not converted yet, per journal; and per backend the records spooled, delivered, waiting
and dropped (by reason), the delivery lag (how old the oldest waiting record is), and the backend's last error.
For a left-over run, what ``tracelet-otel replay`` would send: the waiting records and the unconverted values,
into the same backend runs, which it then ends ``FINISHED`` (training stopped) or ``KILLED``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from tracelet_otel.capture.journal import FrameType, JournalReader, ReleasedStart
from tracelet_otel.delivery.counters import spool_counters
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import DELIVERY_KEY, FINISHED_KEY
from tracelet_otel.layout import RunDirectory, runs_in
from tracelet_otel.reports import RunStatus
from tracelet_otel.runspec import RunSpec

__all__ = ["BackendState", "RunState", "format_states", "run_states"]


@dataclass
class BackendState:
    name: str
    run: dict[str, object] | None  # the backend's reference of its run; None until it is opened
    spooled: int
    delivered: int
    waiting: int
    dropped: dict[str, int]
    lag_s: float | None  # how old the oldest waiting record is; None when nothing waits
    last_error: str | None
    last_error_age_s: float | None
    finished: str | None  # the status the backend run was ended with


@dataclass
class RunState:
    run_id: str
    exp_name: str
    project: str | None
    in_progress: bool  # an agent holds the run
    unconverted: int  # values journaled and not converted yet, every journal together
    ended_by: str | None  # the status the journal's end marker names; None: training did not stop (killed)
    backends: list[BackendState] = field(default_factory=list)


def run_states(spool_dir: str) -> list[RunState]:
    """Every job's run under ``spool_dir`` (the bridge's runs have no run.json and are not listed)."""
    return [_state(run) for run in runs_in(spool_dir) if os.path.exists(run.spec)]


def _state(run: RunDirectory) -> RunState:
    spec = RunSpec.load(run.spec)
    state = RunState(spec.run_id, spec.exp_name, spec.project, run.is_busy(), unconverted=0, ended_by=None)
    spools = {name: Spool(run.spool(name)) for name in spec.backends if os.path.exists(run.spool(name))}
    try:
        for attempt, path in run.journals().items():
            source = RunDirectory.journal_source(attempt)
            reached = [spool.positions()[source].offset if source in spool.positions() else 0
                       for spool in spools.values()]
            unconverted, ended_by = _unconverted(path, min(reached, default=0))
            state.unconverted += unconverted
            state.ended_by = ended_by  # the last attempt's end marker is the run's
        state.backends = [_backend_state(name, spool) for name, spool in spools.items()]
    finally:
        for spool in spools.values():
            spool.close()
    return state


def _unconverted(path: str, converted_through: int) -> tuple[int, str | None]:
    """Values in the journal past ``converted_through``, and the status its end marker names."""
    reader = JournalReader(path, max(converted_through, ReleasedStart(path).start))
    values, ended_by = 0, None
    try:
        while frames := reader.frames():
            for frame in frames:
                if frame.type in (FrameType.EVENT, FrameType.EMBEDDING, FrameType.CONSOLE):
                    values += 1
                elif frame.type == FrameType.END:
                    ended_by = frame.payload.decode() or RunStatus.FINISHED
    finally:
        reader.close()
    return values, ended_by


def _backend_state(name: str, spool: Spool) -> BackendState:
    counters = spool_counters(spool)
    now = time.time()
    oldest = spool.pending(1)
    delivery = spool.get_meta(DELIVERY_KEY) or {}
    return BackendState(name=name, run=delivery.get("run"), spooled=spool.total(), delivered=counters.delivered,
                        waiting=spool.count(), dropped=dict(counters.dropped),
                        lag_s=now - oldest[0][1].wall_time if oldest else None, last_error=counters.last_error,
                        last_error_age_s=None if counters.last_error_at is None else now - counters.last_error_at,
                        finished=spool.get_meta(FINISHED_KEY))


def format_states(spool_dir: str, states: list[RunState]) -> Iterator[str]:
    """The lines ``tracelet-otel status`` prints."""
    if not states:
        yield f"no runs in {spool_dir}"
        return
    for state in states:
        project = f", project {state.project}" if state.project else ""
        where = ("in progress: an agent is delivering it" if state.in_progress
                 else f"left over: `tracelet-otel replay {spool_dir}` delivers it")
        yield f"run {state.run_id} ({state.exp_name}{project}): {where}"
        if state.unconverted:
            yield f"  captured, not converted yet: {state.unconverted} values"
        for backend in state.backends:
            dropped = sum(backend.dropped.values())
            reasons = f" ({', '.join(f'{reason}: {n}' for reason, n in backend.dropped.items())})" if dropped else ""
            lag = f", the oldest waiting {backend.lag_s:.1f} s" if backend.lag_s is not None else ""
            run = (backend.run or {}).get("run_id") or backend.run or "not opened yet"
            yield (f"  {backend.name} run {run}: spooled {backend.spooled}, delivered {backend.delivered}, "
                   f"waiting {backend.waiting}{lag}, dropped {dropped}{reasons}"
                   + (f", ended {backend.finished}" if backend.finished else ""))
            if backend.last_error:
                age = f" ({backend.last_error_age_s:.0f} s ago)" if backend.last_error_age_s is not None else ""
                yield f"    last error{age}: {backend.last_error}"
        if not state.in_progress:
            ends = state.ended_by or f"{RunStatus.KILLED} (training never stopped it)"
            for backend in state.backends:
                if backend.waiting or state.unconverted or not backend.finished:
                    more = f" and the {state.unconverted} values not converted yet" if state.unconverted else ""
                    yield (f"  replay would send {backend.name} its {backend.waiting} waiting records{more}, "
                           f"then end the run {ends}")
