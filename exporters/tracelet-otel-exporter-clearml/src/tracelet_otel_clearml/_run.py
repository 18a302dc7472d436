"""The ClearML task that records are delivered to: executes the calls ``_translate`` produces.

It runs in the delivery worker, a process of its own, so ``Task.init`` there is safe: it patches nothing the
training process uses. The task is opened with every ClearML framework binding off (its TensorBoard binding
would report each value a second time), without argument-parser, console or repository capture (those would
describe the worker), and with ClearML's reporting on threads of the worker instead of its reporting
subprocess, so that a flush takes milliseconds instead of seconds and closing the task ~0.03 s instead of ~10 s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from tracelet_otel.backends import (
    Backend,
    BackendRun,
    FirstFailure,
    OnceLogger,
    Record,
    RecordRejected,
    RunInfo,
    RunStatus,
    local_file,
    read_blob,
    read_histogram,
    read_json,
    save_blob,
)
from tracelet_otel_clearml._source import project_name, script_fields, training_properties
from tracelet_otel_clearml._translate import (
    Call,
    ConnectHparams,
    ReportConsole,
    ReportHistogram,
    ReportImage,
    ReportMedia,
    ReportPrCurve,
    ReportScalar,
    ReportText,
    UploadArtifact,
    pr_curve_points,
    translate,
)

__all__ = ["ClearmlBackend", "ClearmlRun"]

_logger = logging.getLogger("tracelet_otel.clearml")

# Every binding ClearML 2.1 has, off; detect_repository off too (it would describe the worker's own script).
_BINDINGS_OFF = {name: False for name in (
    "detect_repository", "tensorboard", "tensorflow", "tfdefines", "pytorch", "matplotlib", "scikit", "joblib",
    "xgboost", "catboost", "lightgbm", "fastai", "megengine", "hydra", "gradio")}
# Our own bookkeeping of a task (see Bookkeeping).
RUN_ID = "tracelet_run_id"
STORED_THROUGH = "tracelet_stored_through"
SESSIONS = "tracelet_sessions"
STATUS = "tracelet_status"
BOOKKEEPING_FILE = "tracelet.json"
# Debug-sample files of the n-th session of a task are numbered from n * this (see _continue_file_numbering).
FILES_PER_SESSION = 1_000_000
_BINARY = f"python{sys.version_info.major}.{sys.version_info.minor}"
CODE_STATE_TIMEOUT_S = 60.0  # how long closing a task waits for ClearML's account of the code


class _EventClock:
    """ClearML stamps an event with ``time.time()`` when it is made and takes no time of the caller's: this
    stands in for the ``time`` module of ClearML's events module, and answers with the wall time of the record
    being reported, on the thread that reports it (ClearML's monitor thread keeps the real time)."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._installed = False

    def time(self) -> float:
        wall_time = getattr(self._local, "wall_time", None)
        return time.time() if wall_time is None else wall_time

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @contextlib.contextmanager
    def at(self, wall_time: float | None) -> Iterator[None]:
        if not self._installed:
            from clearml.backend_interface.metrics import events

            events.time = self  # type: ignore[attr-defined,assignment]
            self._installed = True
        self._local.wall_time = wall_time
        try:
            yield
        finally:
            self._local.wall_time = None


_event_clock = _EventClock()


class Bookkeeping:
    """Our own state of a task (our run id, how many sessions opened it, what it stored, how it ended), kept
    where ClearML shows nothing to its users: online in the task's runtime properties; offline, where a task
    keeps none, in ``tracelet.json`` in the session folder, which importing the session leaves out."""

    def __init__(self, task: Any) -> None:
        self._task = task

    def read(self) -> dict[str, str]:
        if not self._task.is_offline():
            return {key: str(value) for key, value in self._task._get_runtime_properties().items()}
        return read_bookkeeping(Path(self._task.get_offline_mode_folder()))

    def write(self, **values: object) -> None:
        texts = {key: str(value) for key, value in values.items()}
        if not self._task.is_offline():
            self._task._set_runtime_properties(texts)
            return
        path = Path(self._task.get_offline_mode_folder()) / BOOKKEEPING_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps({**self.read(), **texts}))
        os.replace(partial, path)  # a reader after a crash finds the old state or the new, never half


def read_bookkeeping(session_folder: Path) -> dict[str, str]:
    """An offline session's bookkeeping (empty for a session that is not ours)."""
    try:
        return dict(json.loads((session_folder / BOOKKEEPING_FILE).read_text()))
    except (OSError, ValueError):
        return {}


class ClearmlRun(BackendRun):
    """A ClearML task, online or offline.

    ``resend_duplicates``: the ClearML server stores a scalar, plot or debug-sample event under (task, iteration,
    title, series), so one sent twice replaces itself, but console lines (text) are stored each time, debug
    samples sent again get new files, and an offline session appends every event it is given. So the highest
    ``through_seq`` whose data ClearML wrote is kept in the task's :class:`Bookkeeping`, written after the data,
    and a reopened task resumes after it.
    """

    backend = "clearml"
    resend_duplicates = True

    def __init__(self, task: Any, stored_through: int, first_file_number: int,
                 describing: threading.Thread | None = None) -> None:
        self._task = task
        self._describing = describing  # ClearML's account of the training code, still being made
        self._bookkeeping = Bookkeeping(task)
        self._logger = task.get_logger()
        self._stored_through = stored_through
        self._first_file_number = first_file_number
        self._numbered: set[str] = set()  # the debug-sample series numbered from this session's block
        self._executed = (0, 0)  # (through_seq, calls executed) of the batch being delivered
        self._unflushed_through: int | None = None
        self._scratch = tempfile.mkdtemp(prefix="tracelet-clearml-")  # payloads ClearML reads at flush
        # ClearML's reporting logs a failed send or upload and goes on (offline too: it never raises).
        self._errors = FirstFailure(logging.ERROR, lambda record: record.name.lower().startswith("clearml.metrics"))
        logging.getLogger("clearml").addHandler(self._errors)
        self._warnings = OnceLogger(_logger)

    @property
    def run_id(self) -> str:
        """The task id."""
        return str(self._task.id)

    @property
    def reference(self) -> dict[str, Any]:
        if self._task.is_offline():
            return {"task_id": self._task.id, "offline": True,
                    "offline_folder": str(self._task.get_offline_mode_folder())}
        return {"task_id": self._task.id, "offline": False}

    @property
    def url(self) -> str | None:
        return None if self._task.is_offline() else str(self._task.get_output_log_web_page())

    @property
    def location(self) -> str | None:
        """An offline session's folder, which ``clearml-task --import-offline-session`` imports (zipped)."""
        return str(self._task.get_offline_mode_folder()) if self._task.is_offline() else None

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        translation = translate(records)
        for tag in sorted(translation.non_finite):
            self._warnings.warning(tag, "tracelet-otel: %r has NaN or inf values; ClearML cannot plot them, so each "
                                   "is a line in the task's console log instead", tag)
        # Every payload is read before anything is handed to ClearML: a bad one raises with nothing sent, so
        # the sender's record-by-record retry duplicates nothing.
        prepared = [(call, self._prepare(call)) for call in translation.calls]
        # A batch sent again after a failure (same through_seq) continues where ClearML stopped taking it.
        done = self._executed[1] if self._executed[0] == through_seq else 0
        for index in range(done, len(prepared)):
            self._execute(*prepared[index])
            self._executed = (through_seq, index + 1)
        self._unflushed_through = through_seq

    def flush(self) -> None:
        """Returns once ClearML wrote everything ``deliver`` handed it (offline: into the session folder),
        then records how far it stored; raises if ClearML reported a failure."""
        # ClearML's flush waits for its reporting thread to finish a round of writes; the round it sees end may
        # have started before our last report. The second round surely began after it.
        for _ in range(2):
            self._task.flush(wait_for_uploads=True)
        # A write that raises kills ClearML's reporting thread (and its flush then returns at once): every later
        # report would be lost. The records stay in the spool instead, for `tracelet-otel replay`.
        if not self._task._reporter.is_alive():
            raise RuntimeError("ClearML's reporting thread has stopped (see its error above)")
        failure = self._errors.take()
        if failure:
            # ClearML dropped some of what it was given, and says not which: the batch is sent whole again.
            self._executed = (0, 0)
            raise RuntimeError(f"ClearML could not store the reports: {failure}")
        if self._unflushed_through is not None:
            self._bookkeeping.write(**{STORED_THROUGH: self._unflushed_through})
            self._stored_through, self._unflushed_through = self._unflushed_through, None
        self._executed = (0, 0)
        shutil.rmtree(self._scratch, ignore_errors=True)
        os.makedirs(self._scratch)

    def stored_through(self) -> int:
        return self._stored_through

    def finish(self, status: str) -> None:
        """Close the task. ClearML's close marks it completed; a FAILED or KILLED run is then marked failed or
        stopped. An offline session keeps no status of its own (importing it marks it completed), so a run that
        did not finish says so in the task's console, and the status is in its bookkeeping."""
        self._bookkeeping.write(**{STATUS: status})
        if status != RunStatus.FINISHED and self._task.is_offline():
            self._logger.report_text(f"tracelet-otel: the run ended {status}"
                                     + (": the training process died" if status == RunStatus.KILLED else ""),
                                     print_console=False)
        task_id, offline = self._task.id, self._task.is_offline()
        self._close()
        if offline or status == RunStatus.FINISHED:
            return
        from clearml import Task

        closed: Any = Task.get_task(task_id=task_id)
        if status == RunStatus.KILLED:
            closed.mark_stopped(force=True, status_message="the training process died")
        else:
            closed.mark_failed(status_reason="tracelet-otel: the run failed", force=True)

    def close(self) -> None:
        """Close the task for another to be opened in this process (the bridge's runs take turns); it is reopened
        to deliver more. Online, ClearML marks a closed task completed, and in progress again when reopened."""
        self._close()

    def discard(self) -> None:
        """Delete the task: it is empty, and start_logging gave up on the run."""
        task_id, offline = self._task.id, self._task.is_offline()
        folder = self._task.get_offline_mode_folder() if offline else None
        self._close()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
            Path(f"{folder}.zip").unlink(missing_ok=True)
            return
        from clearml import Task

        Task.get_task(task_id=task_id).delete(raise_on_error=False)

    def _close(self) -> None:
        if self._describing is not None:
            self._describing.join(CODE_STATE_TIMEOUT_S)
            if self._describing.is_alive():
                _logger.warning("tracelet-otel: ClearML's account of the training code (diff, packages) took over "
                                "%.0fs; the task is closed without it", CODE_STATE_TIMEOUT_S)
        self._task.close()
        logging.getLogger("clearml").removeHandler(self._errors)
        shutil.rmtree(self._scratch, ignore_errors=True)

    # -- payloads ----------------------------------------------------------------------------------------------
    def _prepare(self, call: Call) -> Any:
        """What executing ``call`` needs from its payload: a file path, the bars or points, or the text."""
        if isinstance(call, ReportText):
            return call.message + (read_blob(call.blob).decode("utf-8", "replace") if call.blob else "")
        if isinstance(call, ReportImage | ReportMedia):
            return local_file(call.blob, self._scratch)
        if isinstance(call, ReportHistogram):
            return read_histogram(call.blob).bars()
        if isinstance(call, ReportPrCurve):
            try:
                return pr_curve_points(read_json(call.blob))
            except (KeyError, TypeError, ValueError) as error:
                raise RecordRejected(f"payload {call.blob.uri} is not a PR curve: {error!r}") from error
        if isinstance(call, UploadArtifact):
            # ClearML names an upload after its file, so the artifact gets the file name it is filed under.
            target = os.path.join(self._scratch, call.blob.sha256, call.filename)
            if not os.path.exists(target):
                save_blob(call.blob, target)
            return target
        return None

    # -- calls ---------------------------------------------------------------------------------------------------
    def _execute(self, call: Call, payload: Any) -> None:
        with _event_clock.at(getattr(call, "wall_time", None)):
            self._report(call, payload)

    def _report(self, call: Call, payload: Any) -> None:
        logger = self._logger
        if isinstance(call, ReportScalar):
            logger.report_scalar(call.title, call.series, call.value, call.iteration)
        elif isinstance(call, ReportText):
            logger.report_text(payload, print_console=False)
        elif isinstance(call, ReportConsole):
            logger.report_text(call.text, level=logging.ERROR if call.stderr else logging.INFO, print_console=False)
        elif isinstance(call, ReportImage):
            self._continue_file_numbering(call.title, call.series)
            logger.report_image(call.title, call.series, call.iteration, local_path=payload, max_image_history=-1)
        elif isinstance(call, ReportMedia):
            self._continue_file_numbering(call.title, call.series)
            logger.report_media(call.title, call.series, call.iteration, local_path=payload,
                                file_extension=call.extension, max_history=-1)
        elif isinstance(call, ReportHistogram):
            bars = payload
            logger.report_histogram(call.title, call.series, bars.counts, call.iteration, xlabels=bars.centres,
                                    xaxis="value", yaxis="count", data_args={"width": [bars.width] * len(bars.counts)})
        elif isinstance(call, ReportPrCurve):
            logger.report_scatter2d(call.title, call.series, payload, call.iteration, xaxis="recall",
                                    yaxis="precision", mode="lines")
        elif isinstance(call, ConnectHparams):
            self._task.connect(dict(call.params), name=call.section)
        elif isinstance(call, UploadArtifact):
            self._task.upload_artifact(call.name, artifact_object=Path(payload), wait_on_upload=True)

    def _continue_file_numbering(self, title: str, series: str) -> None:
        """ClearML names a debug sample's file ``<title>_<series>_<n>``, with n counted in each process from 0 and
        on across the tasks it opens: the files of a reopened task would overwrite those of its earlier sessions.
        Each session numbers from its own block instead. ClearML offers no public way to do this; its counters
        are per process."""
        key = f"{title}_{series}"
        if key not in self._numbered:
            from clearml.backend_interface.metrics.events import UploadEvent

            UploadEvent._metric_counters[key] = self._first_file_number - 1
            self._numbered.add(key)


class ClearmlBackend(Backend):
    """ClearML: project = ``project`` (else the training repository's name, else ``Untitled``, as ClearML names
    one), task = ``exp_name``. ClearML's own configuration applies: ``clearml.conf``, ``CLEARML_*`` variables,
    ``CLEARML_OFFLINE_MODE=1`` for an offline session under ``$CLEARML_CACHE_DIR/offline/``.

    Option ``clearml_resource_monitoring`` (default True): ClearML's machine and process monitor, measuring the
    training process and its children (ClearML's monitor watches the process that opened the task; ours is
    pointed at the training process's pid). CPU, GPU utilisation and network are the machine's, as in ClearML.
    Not on replay: the training process is gone.
    """

    name = "clearml"
    captures_console = True  # Task.init's auto_connect_streams
    # ClearML holds one task per process (a second Task.init while one is open raises UsageError, and offline
    # Task.create is refused); Task.init from several threads at once crashed a process with SIGSEGV.
    one_run_per_process = True
    options: ClassVar[Mapping[str, type]] = {"clearml_resource_monitoring": bool}

    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> ClearmlRun:
        source = run.source or {}
        if resume and resume.get("offline"):
            _use_offline_folder(resume)
        _report_in_process()
        from clearml import Task

        if resume and resume.get("offline"):
            Task.set_offline(True)
        monitoring = options.get("clearml_resource_monitoring")
        init: dict[str, Any] = {"project_name": project_name(run.project, source), "task_name": run.exp_name,
                                "auto_connect_frameworks": _BINDINGS_OFF, "auto_connect_arg_parser": False,
                                "auto_connect_streams": False,
                                "auto_resource_monitoring": (monitoring is not False and not resume
                                                             and _training_process_monitor(source.get("pid")))}
        if resume:
            return _reopen(Task, init, resume["task_id"])
        task: Any = Task.init(reuse_last_task_id=False, **init)
        describing = _describe_training_process(task, source)
        properties = training_properties(run.rank, source)
        if properties:
            task.set_user_properties(**properties)
        Bookkeeping(task).write(**{RUN_ID: run.run_id, SESSIONS: 1})
        return ClearmlRun(task, stored_through=0, first_file_number=0, describing=describing)

    def find_run(self, run: RunInfo, options: Mapping[str, Any]) -> ClearmlRun | None:
        """The task whose bookkeeping names ``run.run_id``, the latest if several: offline, among the sessions of
        ClearML's cache directory; online, asked of the server."""
        from clearml import Task
        from clearml.config import get_offline_dir

        if Task.is_offline():
            sessions = [(folder.stat().st_mtime, folder) for folder in Path(get_offline_dir()).glob("*/")
                        if read_bookkeeping(folder).get(RUN_ID) == run.run_id]
            if not sessions:
                return None
            folder = max(sessions)[1]
            return self.open_run(run, options, resume={"task_id": folder.name, "offline": True,
                                                       "offline_folder": str(folder)})
        found = Task.query_tasks(project_name=project_name(run.project, run.source or {}), task_filter={
            "_all_": {"fields": [f"runtime.{RUN_ID}"], "pattern": f"^{re.escape(run.run_id)}$"},
            "order_by": ["-last_update"]})
        return self.open_run(run, options, resume={"task_id": found[0], "offline": False}) if found else None


def _reopen(task_class: Any, init: dict[str, Any], task_id: str) -> ClearmlRun:
    # continue_last_task=0 reopens without moving iterations: True would add the last iteration + 1 to every
    # step reported from now on.
    task = task_class.init(reuse_last_task_id=task_id, continue_last_task=0, **init)
    if task.id != task_id:  # ClearML creates a new task, silently, when it cannot reopen the one asked for
        task.close()
        raise RuntimeError(f"ClearML could not reopen task {task_id} (it created {task.id} instead)")
    bookkeeping = Bookkeeping(task)
    state = bookkeeping.read()
    sessions = int(state.get(SESSIONS) or 1)
    bookkeeping.write(**{SESSIONS: sessions + 1})
    stored_through = int(state.get(STORED_THROUGH) or 0)
    return ClearmlRun(task, stored_through, first_file_number=sessions * FILES_PER_SESSION)


def _use_offline_folder(resume: Mapping[str, Any]) -> None:
    """An offline task lives in its session folder: reopen it there, whatever the cache directory is now
    (ClearML would otherwise start an empty session under the same id)."""
    folder = resume.get("offline_folder")
    if not folder or not os.path.isdir(folder):
        raise RuntimeError(f"the offline ClearML session {folder or resume['task_id']} is gone")
    os.environ["CLEARML_CACHE_DIR"] = os.path.dirname(os.path.dirname(folder))  # <cache>/offline/<task id>


def _report_in_process() -> None:
    """Report from threads of this worker, never from ClearML's reporting subprocess (its default on Linux).

    That subprocess keeps reporting off the process that logs, which this worker already is, and costs ~5 s a
    flush round and ~10 s at close (measured: 10 batches of 1000 scalars, 101 s instead of 0.5 s). So it is off
    even where the user's ClearML configuration turns it on.
    """
    from clearml.config import ConfigSDKWrapper, ConfigWrapper

    ConfigWrapper.set_overrides({"sdk": {"development": {"report_use_subprocess": False}}})
    ConfigSDKWrapper.clear_config_impl()


def _training_process_monitor(pid: int | None) -> Any:
    """ClearML's ResourceMonitor class, measuring the training process (ClearML takes a class for this)."""
    from clearml.utilities.resource_monitor import ResourceMonitor

    if pid is None:
        return ResourceMonitor
    import psutil

    class TrainingProcessMonitor(ResourceMonitor):
        def __init__(self, task: Any, **kwargs: Any) -> None:
            super().__init__(task, **kwargs)
            if self._process_info is not None:  # None: the user's configuration asks for the whole machine
                try:
                    self._process_info = psutil.Process(pid)
                except psutil.Error:
                    _logger.warning("tracelet-otel: the training process %s is gone; ClearML monitors the "
                                    "delivery worker instead", pid)

    return TrainingProcessMonitor


def _describe_training_process(task: Any, source: Mapping[str, Any]) -> threading.Thread | None:
    """Task.init described the worker; describe the training process instead. Best effort: never blocks delivery.

    The script's identity (repository, branch, commit, working directory, entry point) is set at once; ClearML's
    account of the code, which takes seconds, follows on a thread of its own (returned, to be waited for at close).
    """
    program = source.get("program")
    try:
        from clearml.backend_api.services import tasks

        root = _repository_root(program) if program and source.get("git_commit") else None
        # set_script edits an existing script section; with repository detection off there is none yet.
        task._update_script(tasks.Script(binary=_BINARY, **script_fields(source, root)))
        if not task.is_offline():  # offline sessions keep no runtime properties
            task._set_runtime_properties({"CLI": program or "python"})
    except Exception as error:
        _logger.warning("tracelet-otel: could not record the training script in ClearML: %s", error)
        return None
    if not program:
        return None
    thread = threading.Thread(target=_record_code_state, args=(task, program), name="tracelet-clearml-code",
                              daemon=True)
    thread.start()
    return thread


def _record_code_state(task: Any, program: str) -> None:
    """What ClearML's own Task.init records of the code, for the training program: the uncommitted diff (for a
    script outside a repository, its code) and the packages the code imports with their installed versions
    (ClearML's ``ScriptInfo``). The worker runs the training process's interpreter: these are its packages."""
    try:
        from clearml.backend_interface.task.repo import ScriptInfo

        result, requirements = ScriptInfo.get(filepaths=[program], check_uncommitted=True, create_requirements=True,
                                              detect_jupyter_notebook=False, log=_logger)
        diff = (result.script or {}).get("diff") or ""
        if result.auxiliary_git_diff:  # too large for the task, as ClearML itself stores it
            task.upload_artifact("auxiliary_git_diff", artifact_object=result.auxiliary_git_diff)
        script = task.data.script
        script.diff = diff
        task._update_script(script)
        if requirements is not None:
            pip, conda = requirements.get_requirements(entry_point_filename=program)
            task._update_requirements({"pip": pip or "", "conda": conda or ""})
    except Exception as error:
        _logger.warning("tracelet-otel: could not record the training code's diff and packages in ClearML: %s",
                        error)


def _repository_root(program: str) -> str | None:
    directory = os.path.dirname(program)
    while True:
        if os.path.exists(os.path.join(directory, ".git")):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
