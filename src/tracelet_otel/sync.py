"""``tracelet-otel sync LOGDIR``: TensorBoard event files as a source, delivered like everything else.

Event files are read record by record (never sampled), each event converted by the agent's own
``EventConverter``, and the records spooled and delivered by the same spools, delivery processes and backends
as a live run's. LOGDIR is a local directory or any fsspec URL (``s3://bucket/runs``, with the credentials
fsspec finds).

**Runs.** A tracker run per directory ``--run-depth`` levels below LOGDIR (default 1: each directory directly
under LOGDIR), named by its path relative to LOGDIR; event files above that depth form a run named after the
directory they are in (files directly in LOGDIR: after LOGDIR). Directories below a run are its writers, named
exactly as ``start_logging`` names writers relative to ``tensorboard_log_dir`` (``naming``), so a job logged live
and the same logdir synced later look the same. ``lightning_logs/version_N/`` is one run per version with the
default; ``output/runs/<date>/`` is one run per date with ``--run-depth 2`` (the run ``runs/<date>``).

**Exactly once.** Every spool records, with the records it takes from an event file and in the same
transaction, how far into that file it got and a fingerprint of the file's first record (``Spool.append``). A
second sync reads each file from where its spools stopped: nothing delivered again, and what was appended since
(or a new file) arrives once. A sync killed at any moment resumes from the same positions. A file whose first
record changed, or that is shorter than where a spool stopped, was rewritten: it is skipped and said so.

**Restart markers.** A restarted writer (``SummaryWriter(purge_step=N)``, a restarted TensorFlow job) starts its
new file with a ``SessionLog.START`` event at step N; TensorBoard then hides the earlier events of that directory
at step N and above, and so does sync: they are skipped (counted) when the marker is seen before they are
delivered. A tracker cannot take back points it has already (``--follow`` sees the marker later): one warning
says so.

**Follow** (``--follow``): the logdir is read again every second; new runs, new files and appended events reach
the trackers within a few seconds of being flushed, and a record still being written is read once it is whole.
SIGINT or SIGTERM stops it: what was read is delivered (up to ``--timeout``) and the runs are ended.

The state lives in ``--spool-dir`` (default ``./.tracelet-sync``), one folder per run (``layout``), and stays
there: it is what makes the next sync deliver nothing twice.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import logging
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
from tensorboard.compat.proto import event_pb2

from tracelet_otel._backend import RunInfo
from tracelet_otel._child import Deliver, Ended, Failed, Finish, Message, Opened
from tracelet_otel._logging import OnceLogger
from tracelet_otel.config import Options
from tracelet_otel.conversion import EventConverter
from tracelet_otel.delivery.counters import spool_counters
from tracelet_otel.delivery.processes import DeliveryProcesses
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.delivery.worker import DELIVERY_KEY, FINISHED_KEY, Delivery
from tracelet_otel.eventfiles import EventFileReader, event_files, fingerprint
from tracelet_otel.layout import RunDirectory
from tracelet_otel.naming import call_of_event_file
from tracelet_otel.payloads import ArtifactStore, RunPayloadStore
from tracelet_otel.records import Record, SourcePosition
from tracelet_otel.reports import RunStatus

__all__ = ["RunSummary", "Sync", "SyncSettings"]

_logger = logging.getLogger("tracelet_otel.sync")

DEFAULT_SPOOL_DIR = ".tracelet-sync"
CHUNK_RECORDS = 10_000  # records spooled in one transaction: few, so that delivery rarely waits for the lock
FOLLOW_POLL_S = 1.0
PROGRESS_EVERY_S = 0.5  # on a terminal; elsewhere a line every PROGRESS_LINE_EVERY_S
PROGRESS_LINE_EVERY_S = 10.0
_START = event_pb2.SessionLog.START

SKIPPED_REWRITTEN = "event file rewritten since the last sync (its first record changed)"
SKIPPED_SHORTER = "event file shorter than at the last sync"
SKIPPED_PURGED = "hidden by a restart marker (purge_step), as TensorBoard hides it"
SKIPPED_UNREADABLE_FILE = "event file that could not be read"


@dataclass(frozen=True)
class SyncSettings:
    logdir: str
    backends: tuple[str, ...]
    project: str | None = None
    spool_dir: str = DEFAULT_SPOOL_DIR
    run_depth: int = 1
    options: Options = field(default_factory=Options)


@dataclass
class RunSummary:
    """What one sync did for one run: events read and the records made of them, values skipped by reason, damage
    found in its files, and per backend what was delivered (ever), dropped and is still waiting."""

    name: str
    events: int = 0
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    damage: list[str] = field(default_factory=list)
    delivered: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)


class _Run:
    """One tracker run from one directory of event files: its spools, converter and payload store."""

    def __init__(self, name: str, root: str, settings: SyncSettings, backend_options: Mapping[str, Any]) -> None:
        self.name = name
        self.root = root  # the run's directory, an fsspec path
        run_id = hashlib.sha256(f"{settings.logdir}\0{name}".encode()).hexdigest()[:32]
        self.layout = RunDirectory.of(settings.spool_dir, run_id)
        os.makedirs(self.layout.path, exist_ok=True)
        info = RunInfo(run_id, name, settings.project, source=_source(settings.logdir))
        self.spools: dict[str, Spool] = {}
        for backend in settings.backends:
            spool = self.spools[backend] = Spool(self.layout.spool(backend))
            if spool.get_meta(DELIVERY_KEY) is None:
                Delivery(backend, None, dict(backend_options), dataclasses.asdict(info)).save(spool)
        options = settings.options
        self.payloads: RunPayloadStore | None = None
        store: ArtifactStore
        if options.artifact_store:  # a store the user named is theirs: nothing in it is removed
            store = ArtifactStore(options.artifact_store)
        else:
            store = self.payloads = RunPayloadStore(self.layout.payloads, options.max_spool_size)
        # Writers are named relative to the run's directory, as start_logging names them relative to
        # tensorboard_log_dir: the names are path arithmetic, so a path of the same shape stands in for a URL.
        self._pseudo_root = f"/{name}"
        self.converter = EventConverter(dataclasses.replace(options, tensorboard_log_dir=self._pseudo_root), store)
        self._writers: dict[str, int] = {}
        self.summary = RunSummary(name)
        self.appended: set[str] = set()  # the backends whose spool got records since this sync began

    def needs_delivery(self, backend: str) -> bool:
        """Records came, records wait (a sync stopped before delivering them), or the run was never ended."""
        spool = self.spools[backend]
        return backend in self.appended or spool.count() > 0 or spool.get_meta(FINISHED_KEY) is None

    def writer_id(self, writer_dir: str, event: Any) -> int:
        """The converter's writer for a directory of the run, registered at its first summary."""
        writer_id = self._writers.get(writer_dir)
        if writer_id is None:
            value = event.summary.value[0] if event.summary.value else None
            call = call_of_event_file(writer_dir, value.tag if value else None,
                                      value.metadata.plugin_data.plugin_name if value else None)
            writer_id = self._writers[writer_dir] = len(self._writers) + 1
            logdir = f"{self._pseudo_root}/{writer_dir}".rstrip("/")
            self.converter.register_writer({"id": writer_id, "logdir": logdir, "call": call})
        return writer_id

    def remove_delivered_payloads(self) -> None:
        if self.payloads is not None:
            spools = list(self.spools.values())
            self.payloads.remove_unless(lambda sha256: any(spool.holds_blob(sha256) for spool in spools))

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()


class Sync:
    """Reads a logdir's event files into its runs' spools and has them delivered (the module docstring)."""

    def __init__(self, settings: SyncSettings, backend_options: Mapping[str, Any],
                 progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._fs, self._root = fsspec.core.url_to_fs(settings.logdir)
        self._root = self._root.rstrip("/")
        self._backend_options = backend_options
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._ended: dict[str, str | None] = {}  # spool path -> how its run ended, once it did
        self._queued: dict[str, list[str]] = {backend: [] for backend in settings.backends}  # spools to deliver
        self._delivering: dict[str, str | None] = dict.fromkeys(settings.backends)  # a backend's current spool
        self._finishing: list[str] = []  # every spool queued or told to end its run
        self._warnings = OnceLogger(_logger)
        self._progress = _Progress(progress)
        self._processes = DeliveryProcesses(list(settings.backends), self._on_message)

    # -- reading ---------------------------------------------------------------------------------------------
    def read(self, *, complete: bool) -> None:
        """Read what the event files hold beyond each spool's position, and have it delivered. ``complete``:
        the writers are done (a one-shot sync): each run is delivered and ended once it is read, one run at a
        time per backend, while the next is read. Otherwise (``follow``) every run goes on."""
        found = event_files(self._fs, self._root)
        self._progress.files_found(len(found))
        for run_name, run_root, files in self._group(found):
            run = self._run(run_name, run_root)
            for writer_dir, writer_files in _by_writer(run_root, files):
                restarts = [self._restart_step(path) for path in writer_files]
                self._warn_of_late_restarts(run, writer_files, restarts)
                for index, path in enumerate(writer_files):
                    later = [step for step in restarts[index + 1 :] if step is not None]
                    self._read_file(run, writer_dir, path, min(later, default=None), complete)
            if complete:
                self._end_when_delivered(run)
            else:
                for backend, spool in run.spools.items():
                    if backend in run.appended or spool.count():
                        self._processes.tell(backend, Deliver(spool.path))
        self._progress.done_reading()

    def _group(self, files: Sequence[str]) -> list[tuple[str, str, list[str]]]:
        """Each run's name, directory and files (the module docstring has the rule)."""
        runs: dict[str, tuple[str, list[str]]] = {}
        logdir_name = self._root.rsplit("/", 1)[-1] or self._root
        for path in files:
            parts = path[len(self._root) + 1 :].split("/")[:-1]
            run_parts = parts[: self.settings.run_depth]
            name = "/".join(run_parts) or logdir_name
            runs.setdefault(name, ("/".join([self._root, *run_parts]), []))[1].append(path)
        return [(name, root, paths) for name, (root, paths) in sorted(runs.items())]

    def _run(self, name: str, root: str) -> _Run:
        with self._lock:
            run = self._runs.get(name)
            if run is None:
                run = self._runs[name] = _Run(name, root, self.settings, self._backend_options)
            return run

    def _restart_step(self, path: str) -> int | None:
        """The step of the restart marker a writer put at the start of this file, if any."""
        reader = EventFileReader(self._fs, path)
        try:
            for count, (_, data) in enumerate(reader.records(complete=False)):
                event = event_pb2.Event.FromString(data)
                if event.HasField("session_log") and event.session_log.status == _START:
                    return int(event.step)
                if event.HasField("summary") or count >= 2:  # the marker follows the file_version event at once
                    return None
        except (OSError, ValueError):
            return None
        return None

    def _warn_of_late_restarts(self, run: _Run, files: Sequence[str], restarts: Sequence[int | None]) -> None:
        """A restart marker in a file that came after earlier files of its writer were delivered: TensorBoard
        hides their points at the marker's step and above, and the trackers cannot take them back."""
        positions = [spool.positions() for spool in run.spools.values()]
        for index, step in enumerate(restarts):
            key = files[index][len(self._root) + 1 :]
            earlier = [path[len(self._root) + 1 :] for path in files[:index]]
            new = not any(key in known for known in positions)
            if step is not None and new and any(path in known for path in earlier for known in positions):
                self._warnings.warning(("late restart", key), "tracelet-otel sync: %s restarts its writer at step "
                                       "%d; TensorBoard hides the points of the earlier files at that step and "
                                       "above, but %s already had them and keeps them", key, step,
                                       ", ".join(run.spools))

    def _read_file(self, run: _Run, writer_dir: str, path: str, hidden_from: int | None, complete: bool) -> None:
        key = path[len(self._root) + 1 :]
        try:
            current = fingerprint(self._fs, path)
            size = self._fs.size(path)
        except (OSError, ValueError) as error:
            self._skip(run, key, SKIPPED_UNREADABLE_FILE, f"{key}: {error}")
            return
        if current is None:
            return  # not even a first record yet: a writer that just opened the file
        reached = {backend: spool.positions().get(key) for backend, spool in run.spools.items()}
        for position in reached.values():
            if position is None:
                continue
            if position.fingerprint != current:
                self._skip(run, key, SKIPPED_REWRITTEN, f"{key} was rewritten since the last sync; it is skipped")
                return
            if size < position.offset:
                self._skip(run, key, SKIPPED_SHORTER, f"{key} is shorter than at the last sync; it is skipped")
                return
        offsets = {backend: position.offset if position else 0 for backend, position in reached.items()}
        reader = EventFileReader(self._fs, path, min(offsets.values()))
        chunk: list[tuple[int, list[Record]]] = []
        chunk_records, last_end = 0, reader.offset
        try:
            for end, data in reader.records(complete=complete):
                records = self._convert(run, writer_dir, data, hidden_from)
                chunk.append((end, records))
                chunk_records += len(records)
                self._progress.read(end - last_end)
                last_end = end
                if chunk_records >= CHUNK_RECORDS:
                    self._spool(run, key, current, chunk, offsets)
                    chunk, chunk_records = [], 0
        except OSError as error:  # the file went away or its store failed: what was read is kept
            self._skip(run, key, SKIPPED_UNREADABLE_FILE, f"{key}: {error}")
        if chunk:
            self._spool(run, key, current, chunk, offsets)
        for damage in reader.damage:
            run.summary.damage.append(f"{key}: {damage}")
            self._warnings.warning((key, damage), "tracelet-otel sync: %s: %s", key, damage)

    def _convert(self, run: _Run, writer_dir: str, data: bytes, hidden_from: int | None) -> list[Record]:
        try:
            event = event_pb2.Event.FromString(data)
        except Exception:  # a record that passes its checksum but holds no Event
            run.summary.skipped["unreadable event"] += 1
            return []
        run.summary.events += 1
        if not event.HasField("summary"):
            return []  # file_version, session_log, graphs
        if hidden_from is not None and event.step >= hidden_from:
            run.summary.skipped[SKIPPED_PURGED] += len(event.summary.value)
            return []
        records = run.converter.convert(run.writer_id(writer_dir, event), event)
        run.summary.records += len(records)
        return records

    def _spool(self, run: _Run, key: str, current: str, chunk: list[tuple[int, list[Record]]],
               offsets: dict[str, int]) -> None:
        """Append a chunk's records to each spool that has not had them, with the file position after it."""
        end = chunk[-1][0]
        for backend, spool in run.spools.items():
            reached = offsets[backend]
            records = [record for record_end, records in chunk if record_end > reached for record in records]
            if spool.append(records, SourcePosition(key, end, current)):
                run.appended.add(backend)
            offsets[backend] = max(reached, end)

    def _skip(self, run: _Run, key: str, reason: str, message: str) -> None:
        run.summary.skipped[reason] += 1
        self._warnings.warning((key, reason), "tracelet-otel sync: %s", message)

    # -- delivering ------------------------------------------------------------------------------------------
    def _end_when_delivered(self, run: _Run) -> None:
        """Queue the run's spools: one run at a time per backend is delivered and ended, so that runs do not
        compete for the tracker (an MLflow sqlite store takes one writer at a time)."""
        for backend in run.spools:
            if run.needs_delivery(backend):
                with self._lock:
                    self._queued[backend].append(run.spools[backend].path)
                    self._finishing.append(run.spools[backend].path)
                self._next(backend)

    def _next(self, backend: str) -> None:
        with self._lock:
            if self._delivering[backend] is not None or not self._queued[backend]:
                return
            path = self._delivering[backend] = self._queued[backend].pop(0)
        self._processes.tell(backend, Deliver(path))
        self._processes.tell(backend, Finish(RunStatus.FINISHED, spool=path))

    def finish(self, timeout: float) -> list[RunSummary]:
        """Deliver what was read (up to ``timeout`` seconds), end the runs that got something, and summarise."""
        for run in self._runs.values():  # after following: every run that got something ends now
            for backend, spool in run.spools.items():
                if spool.path not in self._finishing and run.needs_delivery(backend):
                    self._finishing.append(spool.path)
                    self._processes.tell(backend, Finish(RunStatus.FINISHED, spool=spool.path))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (any(self._queued.values()) or any(
                self._ended.get(path) is None for path in list(self._finishing))):
            time.sleep(0.1)
        self._processes.close(30.0)
        summaries = []
        for run in self._runs.values():
            for backend, spool in run.spools.items():
                counters = spool_counters(spool)
                run.summary.delivered[backend] = counters.delivered
                run.summary.dropped[backend] = dict(counters.dropped)
                run.summary.waiting[backend] = spool.count()
                if not spool.count():
                    spool.compact()  # what stays is the positions, a few kB
            run.summary.skipped.update(run.converter.dropped)
            run.remove_delivered_payloads()
            summaries.append(run.summary)
            run.close()
        return summaries

    def follow(self, stop: threading.Event) -> None:
        """Read and deliver until ``stop`` is set; ``finish`` then ends the runs."""
        while not stop.is_set():
            self.read(complete=False)
            for run in list(self._runs.values()):
                run.remove_delivered_payloads()
            stop.wait(FOLLOW_POLL_S)

    def _on_message(self, backend: str, message: Message) -> None:
        if isinstance(message, Opened):
            _logger.info("tracelet-otel sync: %s -> %s", message.spool, message.run.url or message.run.run_id)
        elif isinstance(message, Ended):
            self._ended[message.spool] = message.status
            with self._lock:
                if self._delivering[backend] == message.spool:
                    self._delivering[backend] = None
            self._next(backend)
        elif isinstance(message, Failed):
            _logger.warning("tracelet-otel sync: %s: %s", message.spool, message.error)


def _by_writer(run_root: str, files: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The run's files by writer directory (relative to the run's directory), each in TensorBoard's order."""
    writers: dict[str, list[str]] = {}
    for path in files:
        directory = path.rsplit("/", 1)[0]
        writers.setdefault(directory[len(run_root) + 1 :] if directory != run_root else "", []).append(path)
    return sorted((writer, sorted(paths)) for writer, paths in writers.items())


def _source(logdir: str) -> dict[str, Any]:
    """Who made the run: an import of a logdir (there is no training process to describe)."""
    try:
        user: str | None = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return {"args": ["sync", logdir], "user": user, "host": socket.gethostname(), "cwd": os.getcwd(),
            "logdir": logdir}


class _Progress:
    """Files, events, MB and rate while a long import runs: a line rewritten in place on a terminal, a line every
    few seconds elsewhere."""

    def __init__(self, out: Callable[[str], None] | None) -> None:
        self._out = out
        self._terminal = out is None and sys.stderr.isatty()
        self._started = time.monotonic()
        self._next = self._started + (PROGRESS_EVERY_S if self._terminal else PROGRESS_LINE_EVERY_S)
        self.files = 0
        self.events = 0
        self.bytes = 0

    def files_found(self, count: int) -> None:
        self.files = count

    def read(self, size: int) -> None:
        self.events += 1
        self.bytes += size
        if time.monotonic() >= self._next:
            self._show()

    def done_reading(self) -> None:
        if self._terminal and self.events:
            self._show()
            print(file=sys.stderr)

    def _show(self) -> None:
        now = time.monotonic()
        self._next = now + (PROGRESS_EVERY_S if self._terminal else PROGRESS_LINE_EVERY_S)
        rate = self.events / max(now - self._started, 1e-9)
        line = (f"tracelet-otel sync: {self.files} files, {self.events} events, {self.bytes / 1e6:.1f} MB, "
                f"{rate:,.0f} events/s")
        if self._out is not None:
            self._out(line)
        elif self._terminal:
            print("\r" + line, end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
