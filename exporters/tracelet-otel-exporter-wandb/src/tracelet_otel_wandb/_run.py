"""The W&B run that records are delivered to: executes the calls ``_translate`` produces.

It runs in the delivery worker process, never in the training process, and makes the run look like the
training job's rather than the helper's: W&B's program, args, host, user and git settings come from
``RunInfo.source``, and W&B's system metrics follow the training process (see :class:`WandbBackend`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from tracelet_otel.backends import (
    Backend,
    BackendRun,
    Histogram,
    OnceLogger,
    Record,
    RecordKind,
    RecordRejected,
    RunInfo,
    RunStatus,
    local_file,
    read_blob,
)
from tracelet_otel_wandb._transaction_log import RunLogWatch, run_directories
from tracelet_otel_wandb._translate import (
    STEP_KEY,
    Call,
    ConsoleLine,
    LogRow,
    Media,
    UpdateConfig,
    pr_curve_table,
    text_html,
    translate,
)

__all__ = ["DELIVERED_SEQ_KEY", "WandbBackend", "WandbRun"]

_logger = logging.getLogger("tracelet_otel.wandb")

DELIVERED_SEQ_KEY = "_tracelet_delivered_seq"  # a summary key; W&B hides keys that start with "_"
RUN_ID_KEY = "_tracelet_run_id"  # summary keys too: our bookkeeping stays out of the user's config
RANK_KEY = "_tracelet_rank"
# W&B 0.31 writes its transaction log every 15 s by default; flush() waits for the log, so it must be written often.
TRANSACTION_LOG_FLUSH_INTERVAL_S = 0.01
LOG_TIMEOUT_S = 60.0
LOG_POLL_S = 0.01
# W&B shows exit code 0 as finished, any other as failed.
EXIT_CODES = {RunStatus.FINISHED: 0, RunStatus.FAILED: 1, RunStatus.KILLED: 2}
NO_PROGRAM = "<python with no main file>"  # what W&B records itself for `python -c` and interactive sessions


class WandbRun(BackendRun):
    """Delivers batches as rows, config and files of one W&B run.

    Duplicates (``resend_duplicates``): W&B appends every row it is given, so a batch sent twice would be
    stored twice. Each batch therefore ends with the summary value ``_tracelet_delivered_seq`` (the batch's
    ``through_seq``), written after its rows, and a reopened run reports the highest one W&B stored from
    :meth:`stored_through`. What that cannot guarantee: a batch whose rows were partly written when the
    worker or wandb-core died (no marker yet) is sent again whole on replay, and its written part is then in
    the run twice; W&B has no transaction to make a batch all or nothing.
    """

    backend = "wandb"
    max_batch = 1000
    resend_duplicates = True

    def __init__(self, run: Any, stored_through: int = 0, event_files: bool = True) -> None:
        self._run = run
        self._event_files = event_files
        self._offline = bool(run.offline)
        self._stored_through = stored_through
        self._handed_over_through = stored_through
        self._confirmed_through = stored_through
        self._unconfirmed = 0  # records at the head of the spool handed to W&B since the last flush
        without_log = run.disabled or (run.settings.x_skip_transaction_log and not self._offline)
        self._watch = None if without_log else RunLogWatch(run.settings.sync_file, DELIVERED_SEQ_KEY)
        self._warnings = OnceLogger(_logger)

    @property
    def run_id(self) -> str:
        return str(self._run.id)

    @property
    def directory(self) -> str:
        """This process's directory of the run (``.../wandb/offline-run-<time>-<id>``)."""
        return str(self._run.settings.sync_dir)

    @property
    def reference(self) -> dict[str, Any]:
        return {"run_id": self._run.id, "project": self._run.project, "entity": self._run.entity or None,
                "dir": self._run.settings.root_dir, "mode": "offline" if self._offline else "online"}

    @property
    def url(self) -> str | None:
        return None if self._offline else self._run.url

    @property
    def location(self) -> str | None:
        """An offline run's directory, which ``wandb sync`` uploads."""
        return self.directory if self._offline else None

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        # After a failed flush the sender sends again from the first undelivered record, so what this process
        # already handed to W&B is the head of the batch (or, record by record, each record up to
        # _handed_over_through): it is confirmed by the next flush, never logged twice.
        if through_seq <= self._handed_over_through:
            return
        fresh = records[self._unconfirmed :]
        translation = translate(fresh)
        for tag, key in translation.renamed.items():
            self._warnings.warning(tag, "tracelet-otel: W&B keeps the key %r for itself; logged as %r", tag, key)
        with tempfile.TemporaryDirectory(prefix="tracelet-wandb-") as scratch:
            # Every payload is read and checked before anything is logged: a rejected record leaves nothing
            # half-logged behind for the sender's record-by-record retry.
            actions = [self._prepare(call, scratch) for call in translation.calls]
            for action in actions:
                action()
        self._run.summary[DELIVERED_SEQ_KEY] = through_seq
        self._unconfirmed = len(records)
        self._handed_over_through = through_seq

    def flush(self) -> None:
        """Return once the run's transaction log on disk holds everything ``deliver`` handed to W&B.

        W&B 0.31 has no call that waits until logged data is written. ``run.log`` hands rows to the wandb-core
        process, which appends them to the run's transaction log (``run-<id>.wandb``) through a buffer that it
        writes out every ``x_transaction_log_flush_interval`` (15 s by default; this run sets 0.01 s). Each batch
        ends with its ``_tracelet_delivered_seq`` summary value, which wandb-core writes after the batch's rows,
        and this method reads the log until that value is there (usually within 0.1 s).

        Guaranteed on return: the batch is in the file, so it survives a crash of this process and of
        wandb-core, and an offline run holds it for ``wandb sync``. Not guaranteed: W&B never fsyncs the file,
        so an OS crash or power loss can lose what the page cache held; and online, the upload to the server
        is W&B's business, awaited only by ``finish`` (what the server lacks after a crash is sent again, see
        :meth:`WandbBackend.open_run`). With ``x_skip_transaction_log`` (online only) or a disabled run there is
        no log, and nothing is guaranteed before ``finish``.

        Raises:
            TimeoutError: the value did not reach the log within 60 s (wandb-core stuck or gone); the sender
                retries, and the records already handed over are not logged again.
        """
        if self._watch is not None and self._handed_over_through > self._confirmed_through:
            self._wait_for_log(lambda watch: watch.highest >= self._handed_over_through,
                               f"the records through {self._handed_over_through}")
        self._confirmed_through = self._handed_over_through
        self._unconfirmed = 0

    def stored_through(self) -> int:
        return self._stored_through

    def finish(self, status: str) -> None:
        """End the run: exit code 0 for ``FINISHED`` (W&B: finished), 1 for ``FAILED`` and 2 for ``KILLED``
        (W&B: failed; it has no state a client can set for a killed job).

        W&B's ``finish`` returns before wandb-core has written the end of the transaction log (offline, within
        milliseconds, often with the last records still in its buffer), so this waits for the exit record in
        the log: then the run is complete on disk even if this process exits at once. Online, W&B's ``finish``
        also waits for its upload.
        """
        self._run.finish(exit_code=EXIT_CODES.get(status, 1))
        if self._watch is not None:
            self._wait_for_log(lambda watch: watch.ended, "the end of the run", every_record=True)

    def keep_event_files(self, paths: Sequence[str], root: str) -> None:
        """The event files go into the run's files, as W&B's own ``sync_tensorboard`` puts them there, so its
        TensorBoard tab shows them (``wandb sync`` uploads an offline run's). Their paths below the directory
        they all share."""
        present = [path for path in paths if os.path.isfile(path)]
        if not self._event_files or not present:
            return
        base = os.path.commonpath([root, *(os.path.dirname(path) for path in present)])
        for path in present:
            self._save_file(path, os.path.relpath(path, base))

    def discard(self) -> None:
        """End the empty run failed; offline, also delete its directory, so ``wandb sync`` never uploads it. A
        run W&B resumed (a restarted job's) holds an earlier attempt's data: it is ended killed instead."""
        if self._run.resumed:
            self.finish(RunStatus.KILLED)
            return
        self.finish(RunStatus.FAILED)
        if self._offline:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _wait_for_log(self, reached: Callable[[RunLogWatch], bool], what: str, every_record: bool = False) -> None:
        assert self._watch is not None
        deadline = time.monotonic() + LOG_TIMEOUT_S
        while True:
            self._watch.poll(every_record)
            if reached(self._watch):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"W&B did not write {what} to {self._run.settings.sync_file} within "
                                   f"{LOG_TIMEOUT_S:.0f} s")
            time.sleep(LOG_POLL_S)

    def _prepare(self, call: Call, scratch: str) -> Callable[[], None]:
        """Read and check what ``call`` needs; returns the action that hands it to W&B."""
        if isinstance(call, ConsoleLine):
            return lambda: self._console_line(call)
        if isinstance(call, LogRow):
            values = {key: self._media(value, scratch) if isinstance(value, Media) else value
                      for key, value in call.values.items()}
            return lambda: self._run.log(values)
        if isinstance(call, UpdateConfig):
            # W&B refuses to change a config value unless asked; a later add_hparams call wins (every call's
            # values are also in its own file under hparams/).
            return lambda: self._run.config.update(dict(call.values), allow_val_change=True)
        source = local_file(call.blob, scratch)
        return lambda: self._save_file(source, call.path)

    def _media(self, media: Media, scratch: str) -> Any:
        """The W&B media object. The payload is read first: an unreachable artifact store is retried, a missing
        payload dropped; what W&B then cannot take is rejected."""
        import wandb

        files = media.kind in (RecordKind.IMAGE, RecordKind.VIDEO, RecordKind.AUDIO)
        path = local_file(media.blob, scratch) if files else ""
        data = b"" if files else read_blob(media.blob)
        try:
            if media.kind is RecordKind.IMAGE:
                return wandb.Image(path)
            if media.kind is RecordKind.VIDEO:
                return wandb.Video(path, format="gif")
            if media.kind is RecordKind.AUDIO:
                return wandb.Audio(path)  # from the WAV file: no soundfile package needed
            if media.kind is RecordKind.HISTOGRAM:
                edges, counts = Histogram.from_json(json.loads(data)).bars()
                return wandb.Histogram(np_histogram=(np.asarray(counts), np.asarray(edges)))
            if media.kind is RecordKind.TEXT:
                return wandb.Html(text_html(data.decode("utf-8", "replace")), inject=False)
            names, rows = pr_curve_table(json.loads(data))
            columns: list[str | int] = list(names)
            return wandb.Table(columns=columns, data=rows)
        except Exception as error:
            raise RecordRejected(f"W&B rejects the {media.kind.value} payload {media.blob.uri}: {error}") from error

    def _console_line(self, line: ConsoleLine) -> None:
        """Into the run's Logs, as W&B's own console capture sends a line (with the time it was written): W&B
        has no public call for it."""
        from wandb.proto.wandb_internal_pb2 import OutputRawRecord  # type: ignore[attr-defined]  # a * re-export

        kind = OutputRawRecord.OutputType.STDERR if line.stderr else OutputRawRecord.OutputType.STDOUT
        record = OutputRawRecord(output_type=kind, line=line.text + "\n")
        record.timestamp.FromNanoseconds(int(line.wall_time * 1e9))
        try:
            self._run._interface._publish_output_raw(record, nowait=False)
        except AttributeError as error:  # another W&B release, without that private call: the line alone drops
            raise RecordRejected(f"this W&B release takes no console lines ({error})") from error

    def _save_file(self, source: str, path: str) -> None:
        target = os.path.join(self._run.dir, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)
        self._run.save(target, base_path=self._run.dir, policy="now")



class WandbBackend(Backend):
    """W&B: ``wandb.init(project=project, name=exp_name)``; entity, mode (``offline`` works with no network),
    directory and the other ``WANDB_*`` variables are W&B's own. W&B's TensorBoard sync and patching stay off.

    The run shows the training job, not the delivery worker: ``program``/``program_abspath``/
    ``program_relpath``, ``args``, ``host``, ``username``, ``git_commit`` and ``git_remote_url`` come from
    ``RunInfo.source`` unless a ``WANDB_*`` variable sets them. W&B's console capture is off (it would record
    the worker): the training process's console lines (``capture_console``) go into the run's Logs instead.
    Our run id and rank are the hidden summary keys ``_tracelet_run_id`` and ``_tracelet_rank``: the config
    holds the user's hparams only.

    System metrics (option ``wandb_system_metrics``; unset: W&B's default, on): W&B samples the process whose
    pid is ``x_stats_pid``, set to the training process. What W&B cannot do: only its ``proc.*`` metrics (memory,
    CPU, threads, and GPU use per process) are that process's; CPU, memory, disk, network and GPU totals are the
    machine's, as always with W&B; DataLoader workers are not counted (``x_stats_track_process_tree`` would
    count this worker and wandb-core too). A reopened run (replay) collects none: the training process is gone.

    Event files (option ``wandb_event_files``, default True, as W&B's own ``sync_tensorboard`` keeps them): when
    the run ends, the captured writers' event files are saved into the run, below the directory they share, for
    W&B's TensorBoard tab. Not behind the collector: the files are on the job's machine.

    A ``resumable`` run (a restarted job's ``run_id``) is ``wandb.init(id=run_id, resume="allow")``: it continues
    the W&B run of that id, online, or adds a directory for it offline (``wandb sync`` uploads them as one run).

    Reopening (``resume``): the same run id, directory, project, entity and mode. Online it is
    ``resume="must"`` and ``stored_through`` is the server's ``_tracelet_delivered_seq``. Offline W&B checks
    nothing and starts a new directory for the same id (``wandb sync`` uploads a resumed run's directories in
    order); ``stored_through`` is the highest value in the earlier directories' transaction logs.
    """

    name = "wandb"
    captures_console = True  # W&B's console="auto"
    options: ClassVar[Mapping[str, type]] = {"wandb_system_metrics": bool, "wandb_event_files": bool}

    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> WandbRun:
        import wandb

        source = dict(run.source or {})
        settings: dict[str, Any] = {"console": "off", "quiet": True,
                                    "x_transaction_log_flush_interval": TRANSACTION_LOG_FLUSH_INTERVAL_S,
                                    **_source_settings(source),
                                    **_system_metrics_settings(options.get("wandb_system_metrics"), source, resume)}
        arguments: dict[str, Any] = {"name": run.exp_name, "reinit": "create_new", "sync_tensorboard": False,
                                     "settings": wandb.Settings(**settings)}
        if resume:
            arguments.update(id=resume["run_id"], project=resume["project"], entity=resume["entity"], dir=resume["dir"],
                             mode=resume["mode"], resume="allow" if resume["mode"] == "offline" else "must")
        else:
            arguments.update(project=run.project)
            if run.resumable:  # a restarted job continues the W&B run of its id, or starts it
                arguments.update(id=run.run_id, resume="allow")
        with _training_argv(source):
            wandb_run = wandb.init(**arguments)
        wandb_run.define_metric(STEP_KEY)
        wandb_run.define_metric("*", step_metric=STEP_KEY)
        if not resume:
            wandb_run.summary.update({RUN_ID_KEY: run.run_id, **({RANK_KEY: run.rank} if run.rank is not None else {})})
        return WandbRun(wandb_run, _stored_through(wandb_run) if resume or run.resumable else 0,
                        event_files=options.get("wandb_event_files") is not False)


def _source_settings(source: Mapping[str, Any]) -> dict[str, Any]:
    if not source:
        return {}
    program, cwd = source.get("program"), source.get("cwd")
    relative = os.path.relpath(program, cwd) if program and cwd and program.startswith(cwd + os.sep) else None
    wanted = {"program": program or NO_PROGRAM, "program_abspath": program, "program_relpath": relative,
              "host": source.get("host"), "username": source.get("user"), "git_commit": source.get("git_commit"),
              "git_remote_url": source.get("git_remote")}
    # A WANDB_* variable the user set wins, as it would have in the training process.
    return {name: value for name, value in wanted.items()
            if value is not None and f"WANDB_{name.upper()}" not in os.environ}


def _system_metrics_settings(enabled: bool | None, source: Mapping[str, Any], resume: Any) -> dict[str, Any]:
    pid = source.get("pid")
    if enabled is False or resume is not None or not _is_running_here(pid, source.get("host")):
        return {"x_disable_stats": True}
    return {"x_stats_pid": pid, **({"x_disable_stats": False} if enabled else {})}


def _is_running_here(pid: int | None, host: str | None) -> bool:
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def _training_argv(source: Mapping[str, Any]) -> Iterator[None]:
    """W&B reads a run's args from ``sys.argv`` and has no setting for them: show it the training process's."""
    if "args" not in source:
        yield
        return
    saved = sys.argv
    sys.argv = [source.get("program") or saved[0], *source["args"]]
    try:
        yield
    finally:
        sys.argv = saved


def _stored_through(wandb_run: Any) -> int:
    if not wandb_run.offline:
        return int(wandb_run.summary.get(DELIVERED_SEQ_KEY) or 0)
    current = wandb_run.settings.sync_dir
    highest = 0
    for directory in run_directories(os.path.dirname(current), wandb_run.id):
        if directory != current:
            log = os.path.join(directory, f"run-{wandb_run.id}.wandb")
            watch = RunLogWatch(log, DELIVERED_SEQ_KEY)
            watch.poll()
            highest = max(highest, watch.highest)
    return highest
