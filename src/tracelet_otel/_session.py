"""``start_logging`` / ``stop_logging``: one active run per process."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tracelet_otel import capture
from tracelet_otel import environment_variables as env
from tracelet_otel._backend import Backend, BackendRunHandle, load_backend
from tracelet_otel._child import Child, Done, Failed, Finish, Message, Ready
from tracelet_otel.capture.console import ConsoleTee
from tracelet_otel.config import Options
from tracelet_otel.errors import RunNotStarted
from tracelet_otel.layout import RunDirectory, leftover_runs
from tracelet_otel.provenance import training_process
from tracelet_otel.reports import CaptureReport, DeliveryReport, RunStatus
from tracelet_otel.runspec import RunSpec

__all__ = ["Run", "start_logging", "stop_logging"]

_logger = logging.getLogger("tracelet_otel")
# One line at start and one at stop, on stderr as the trackers print their runs: silence them with
# logging.getLogger("tracelet_otel.status").setLevel(logging.WARNING).
_status = logging.getLogger("tracelet_otel.status")

AGENT_START_TIMEOUT_S = 120.0
AGENT_EXIT_GRACE_S = 30.0


@dataclass
class Run:
    """What ``start_logging`` returns; also a context manager that calls ``stop_logging`` on exit.

    ``backends`` names each backend's run (``run.backends["mlflow"].run_id``). ``delivery`` and ``capture`` are
    filled in by ``stop_logging``: a :class:`~tracelet_otel.reports.DeliveryReport` per backend (records
    spooled, delivered, retried, dropped by reason, left undelivered) and a
    :class:`~tracelet_otel.reports.CaptureReport` (what capture and conversion left out, by reason).
    """

    run_id: str
    exp_name: str
    project: str | None
    directory: str
    backends: dict[str, BackendRunHandle]
    delivery: dict[str, DeliveryReport] = field(default_factory=dict)
    capture: CaptureReport = field(default_factory=CaptureReport)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if _active is not None and _active.run is self:
            stop_logging()


def _start_agent(run_dir: str) -> Child:
    return Child([sys.executable, "-m", "tracelet_otel.agent", run_dir])


def _end_agent(agent: Child, status: str, timeout: float) -> Message:
    """Tell the agent training has ended, wait for its summary (``Done``), and make sure it is gone."""
    agent.send(Finish(status))
    agent.end_input()
    done = agent.receive(timeout)
    agent.wait(AGENT_EXIT_GRACE_S if isinstance(done, Done) else 0)
    return done


@dataclass
class _ActiveRun:
    run: Run
    options: Options
    capture: capture.Capture | None
    agent: Child
    console: ConsoleTee | None = None


_active: _ActiveRun | None = None
_lock = threading.RLock()


def _backend_names(backend: str | Sequence[str] | None) -> list[str]:
    if backend is None:
        backend = os.environ.get(env.TRACELET_BACKEND, "mlflow")
    names = backend.split(",") if isinstance(backend, str) else list(backend)
    # The standard way to ask for spans over OTLP means the otlp backend: one durable route, not a second one.
    if "otlp" in (name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")):
        names.append("otlp")
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def _warn_if_payloads_stay_here(names: Sequence[str], options: Options) -> None:
    """Over OTLP only references travel: the receiver behind the collector reads payloads from the store."""
    store = options.artifact_store
    if "otlp" in names and (store is None or store.startswith("file://") or "://" not in store):
        _logger.warning("tracelet-otel: backend otlp sends payloads (images, histograms, ...) as references to the "
                        "artifact store, and %s is a local directory, which a receiver behind the collector on "
                        "another machine cannot read; set artifact_store to a shared fsspec URL such as "
                        "s3://bucket/prefix", store or "the default store (in the run's directory)")


def _rank() -> int | None:
    rank = os.environ.get("RANK")
    return int(rank) if rank is not None and rank.isdigit() else None


def start_logging(
    exp_name: str | None = None,
    project: str | None = None,
    backend: str | Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Run:
    """Capture every ``SummaryWriter`` call from now on and deliver it to the backends.

    Args:
        exp_name: run name in the backends (``TRACELET_EXP_NAME``, else ``run-<date>-<time>``).
        project: the backend's grouping of runs, the MLflow experiment (``TRACELET_PROJECT``).
        backend: a name or a list of names of installed backends; by default ``TRACELET_BACKEND``, else
            ``"mlflow"``.
        config: options (see :mod:`tracelet_otel.config`); ``TRACELET_<OPTION>`` variables fill the rest. With
            ``run_id`` (``TRACELET_RUN_ID``), a restarted job continues its run: the same run in every backend,
            and what the killed attempt left undelivered is delivered first (``docs/restarts.md``).

    Returns:
        The run handle, with our run id and each backend's run.

    Raises:
        ConfigurationError: an unknown backend or option, or a value that cannot be read (the message names the
            nearest valid one); a ``ValueError`` too.
        RunNotStarted: a backend could not open its run (for example, an unreachable tracking server), or
            another process runs the same ``run_id``; a ``RuntimeError`` too. Nothing is left behind: the runs
            other backends opened are undone.

    A run that is still active is stopped first, with a warning.
    """
    global _active
    with _lock:
        if _active is not None:
            _logger.warning("tracelet-otel: start_logging called while run %s is active; stopping it first",
                            _active.run.run_id)
            stop_logging()
        names = _backend_names(backend)
        backends = {name: load_backend(name) for name in names}
        options = Options.resolve(config, {name: kind for b in backends.values() for name, kind in b.options.items()})
        _warn_if_payloads_stay_here(names, options)
        rank = _rank()
        run_id = _own_run_id(options, rank)
        layout = RunDirectory.of(options.spool_dir, run_id)
        attempt = _attempt(layout)
        os.makedirs(layout.path, exist_ok=attempt > 1)
        spec = RunSpec(run_id=run_id,
                       exp_name=exp_name or os.environ.get(env.TRACELET_EXP_NAME) or time.strftime("run-%Y%m%d-%H%M%S"),
                       project=project or os.environ.get(env.TRACELET_PROJECT), backends=tuple(names),
                       options=_absolute_paths(options), rank=rank, source=training_process(), attempt=attempt)
        spec.save(layout.spec)
        open(layout.journal(attempt), "ab").close()
        agent = _start_agent(layout.path)
        ready = agent.receive(AGENT_START_TIMEOUT_S)
        if not isinstance(ready, Ready):
            agent.wait(0)
            # Nothing was captured: nothing to replay, except what an earlier attempt left.
            if attempt == 1:
                shutil.rmtree(layout.path, ignore_errors=True)
            else:
                os.remove(layout.journal(attempt))
            reason = ready.error if isinstance(ready, Failed) else f"unexpected {ready!r}"
            raise RunNotStarted(f"tracelet-otel could not start run {run_id}: {reason}")
        run = Run(run_id=run_id, exp_name=spec.exp_name, project=spec.project, directory=layout.path,
                  backends=dict(ready.runs))
        try:
            started, patched = _capture(layout.journal(attempt), options)
        except BaseException:
            # The runs are open and nothing was captured: undo them rather than leave empty runs behind.
            _end_agent(agent, RunStatus.DISCARD, AGENT_EXIT_GRACE_S)
            raise
        console = _tee_console(started, options, backends.values())
        _active = _ActiveRun(run, options, started, agent, console)
        _say_started(run, options, patched, console is not None, rank, attempt)
        _offer_replay(options.spool_dir, layout)
        return run


def _own_run_id(options: Options, rank: int | None) -> str:
    """A new id, or the one the user chose (``run_id``), one per rank: rank 0, or a job without ranks, has it as
    it is, and rank N has ``<run_id>-rankN``."""
    if options.run_id is None:
        return uuid.uuid4().hex
    return options.run_id if not rank else f"{options.run_id}-rank{rank}"


def _attempt(layout: RunDirectory) -> int:
    """1 for a new run; for a run an earlier attempt of a restarted job left here, the attempt after its last.

    Raises:
        RunNotStarted: another process runs it now (a ``run_id`` is one job's at a time).
    """
    journals = layout.journals()
    if not journals:
        return 1
    if layout.is_busy():
        raise RunNotStarted(f"tracelet-otel could not start run {layout.run_id}: another process is running it "
                            "(a run_id belongs to one job at a time)")
    return max(journals) + 1


def _capture(journal: str, options: Options) -> tuple[capture.Capture | None, list[str]]:
    """The run's capture, installed in place of any other (the zero-code route's stand-in), and the packages
    whose writers it patched."""
    capture.uninstall()
    if not options.track_tensorboard:
        return None, []
    started = capture.Capture(journal, options.max_spool_size)
    try:
        patched = capture.install(started)
    except BaseException:
        capture.uninstall()
        started.close(RunStatus.DISCARD)
        raise
    return started, patched


def _tee_console(started: capture.Capture | None, options: Options, backends: Iterable[Backend]) -> ConsoleTee | None:
    """The console, captured into the journal when ``capture_console`` (unset: a backend whose tracker's own
    integration records it) says so. A console that cannot be captured is said once; training goes on."""
    wanted = options.capture_console
    if started is None or not (any(backend.captures_console for backend in backends) if wanted is None else wanted):
        return None
    try:
        return ConsoleTee(started.on_console)
    except OSError as error:
        _logger.warning("tracelet-otel: the console is not captured: %s", error)
        return None


def _status_logger() -> logging.Logger:
    """``tracelet_otel.status`` at INFO; where the application configured no logging at all, with a handler of
    its own on stderr (Python would print nothing below WARNING)."""
    if _status.level == logging.NOTSET:
        _status.setLevel(logging.INFO)
    if not _status.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        _status.addHandler(handler)
        _status.propagate = False
    return _status


def _say_started(run: Run, options: Options, patched: Sequence[str], console: bool, rank: int | None,
                 attempt: int) -> None:
    """What is captured and where it goes, in one line: the most common "nothing arrives" is a writer that was
    never captured, or a run the user looks for in the wrong place."""
    if patched:
        captures = f"captures SummaryWriter of {' and '.join(patched)}"
    elif not options.track_tensorboard:
        captures = "captures nothing (track_tensorboard is off)"
    else:
        captures = "captures nothing (neither torch.utils.tensorboard nor tensorboardX is installed)"
    if console:
        captures += ", and the console"
    where = "; ".join(f"{name} run {handle.run_id}" + (f" {handle.url or handle.location}"
                                                        if handle.url or handle.location else "")
                      for name, handle in run.backends.items())
    who = "" if rank is None else f", rank {rank}"
    again = "" if attempt == 1 else f", continued (attempt {attempt})"
    _status_logger().info("tracelet-otel: run %s (%s%s%s) %s -> %s", run.exp_name, run.run_id, who, again,
                          captures, where)


def _say_stopped(run: Run) -> None:
    """What each backend got, in one line; the warnings before it say why anything is missing."""
    def backend(name: str, report: DeliveryReport) -> str:
        left = f", {report.undelivered} left for replay" if report.undelivered else ""
        return f"{name} {report.delivered} delivered, {sum(report.dropped.values())} dropped{left}"

    dropped = sum(run.capture.dropped.values())
    capture_part = f"; {dropped} values dropped before delivery" if dropped else ""
    _status_logger().info("tracelet-otel: run %s (%s) stopped: %s%s", run.exp_name, run.run_id,
                          "; ".join(backend(name, report) for name, report in run.delivery.items()), capture_part)


def _offer_replay(spool_dir: str, current: RunDirectory) -> None:
    """Earlier runs that left records behind are named, with the command that delivers them. Delivering
    them here would send traffic the user did not ask for from a job that may not own those runs."""
    try:
        leftovers = [run.run_id for run in leftover_runs(spool_dir) if run != current]
    except OSError as error:  # another agent removed its run meanwhile: the offer is a courtesy, never fatal
        _logger.debug("tracelet-otel: could not look for leftover runs: %s", error)
        return
    if leftovers:
        _logger.warning("tracelet-otel: %d earlier run(s) in %s still hold undelivered records (%s); deliver them "
                        "with: tracelet-otel replay %s", len(leftovers), spool_dir, ", ".join(leftovers), spool_dir)


def _absolute_paths(options: Options) -> Options:
    """The agent and replay may run elsewhere: pin relative paths to this working directory."""
    from dataclasses import replace

    store = options.artifact_store
    if store is not None and "://" not in store:
        store = os.path.abspath(store)
    root = options.tensorboard_log_dir
    return replace(options, spool_dir=os.path.abspath(options.spool_dir), artifact_store=store,
                   tensorboard_log_dir=os.path.abspath(root) if root else None)


def stop_logging() -> Run | None:
    """Deliver what is in flight (up to ``stop_timeout``), end the backend runs and restore ``SummaryWriter``.

    Returns the stopped run with its delivery counters, or None when no run was active. Never raises: it runs
    at the end of training and at exit, where an error would hide the user's own.
    """
    global _active
    with _lock:
        active, _active = _active, None
        if active is None:
            _logger.debug("tracelet-otel: stop_logging called with no active run")
            return None
        try:
            return _stop(active)
        except Exception:
            _logger.exception("tracelet-otel: stopping run %s failed; its spool keeps what was not delivered: "
                              "run `tracelet-otel replay %s`", active.run.run_id, active.options.spool_dir)
            active.agent.wait(0)
            return active.run


def _stop(active: _ActiveRun) -> Run:
    if active.console is not None:
        active.console.stop()
    if active.capture is not None:
        capture.uninstall()
        active.capture.close()
    done = _end_agent(active.agent, RunStatus.FINISHED, active.options.stop_timeout + AGENT_EXIT_GRACE_S)
    run = active.run
    if not isinstance(done, Done):
        reason = done.error if isinstance(done, Failed) else f"unexpected {done!r}"
        _logger.warning("tracelet-otel: the agent of run %s did not finish (%s); its spool keeps what was not "
                        "delivered: run `tracelet-otel replay %s`", run.run_id, reason, active.options.spool_dir)
        return run
    run.delivery = {name: DeliveryReport.from_json(body) for name, body in done.summary["backends"].items()}
    dropped = Counter(done.summary["capture"]["dropped"]) + (active.capture.dropped if active.capture else Counter())
    run.capture = CaptureReport(dropped=dict(dropped), uncaptured=tuple(done.summary["capture"]["uncaptured"]))
    _report(run, active.options)
    _say_stopped(run)
    return run


def _report(run: Run, options: Options) -> None:
    for name, report in run.delivery.items():
        if report.undelivered:
            _logger.warning("tracelet-otel: %d records of run %s were not delivered to %s within %.0fs; they are "
                            "kept in %s. Deliver them with: tracelet-otel replay %s", report.undelivered,
                            run.run_id, name, options.stop_timeout, report.spool, options.spool_dir)
        if report.dropped:
            _logger.warning("tracelet-otel: %s dropped records of run %s: %s", name, run.run_id, dict(report.dropped))
    if run.capture.dropped:
        _logger.warning("tracelet-otel: values not delivered in run %s, by reason: %s", run.run_id,
                        dict(run.capture.dropped))
    if run.capture.uncaptured:
        directories = sorted({os.path.dirname(path) for path in run.capture.uncaptured})
        _logger.warning("tracelet-otel: %d event file(s) in %s hold values that did not reach run %s: a writer "
                        "tracelet-otel does not patch (TensorFlow, Keras, JAX) or a process that did not start a "
                        "run wrote them. Import each directory as a run of its own with: tracelet-otel sync DIR%s",
                        len(run.capture.uncaptured), ", ".join(directories), run.run_id,
                        "".join(f" --backend {name}" for name in run.delivery))


def start_from_environment() -> Run | None:
    """The ``opentelemetry-instrument`` route: everything from ``TRACELET_*`` variables.

    It runs inside the first ``SummaryWriter`` call of a script that did not start a run itself: a failure is
    one warning, and training goes on with TensorBoard alone.
    """
    try:
        return start_logging()
    except Exception as error:
        capture.uninstall()
        _logger.warning("tracelet-otel: could not start a run from the TRACELET_* environment (%s); training "
                        "continues and TensorBoard writes its files, but nothing is delivered", error)
        return None


def active_capture() -> capture.Capture | None:
    """The capture of the active run, if one is active and captures."""
    active = _active
    return None if active is None else active.capture


def _forget_in_child() -> None:
    """A forked child (a DataLoader worker) owns nothing of the run (no threads, no agent): what it logs is
    appended to the parent's journal (``Capture.continue_in_child``) and the parent stops the run."""
    global _active, _lock
    _lock = threading.RLock()
    if _active is not None and _active.capture is not None:
        _active.capture.continue_in_child()
    _active = None


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(stop_logging)
