"""The agent: a process beside training that turns the capture journal into OpenTelemetry and delivers it.

``start_logging`` starts it with ``python -m tracelet_otel.agent RUN_DIR``. It reports ``Ready`` (with each
backend's run, :mod:`tracelet_otel._child`), follows the journal until the end marker, until the training process
sends ``Finish`` (the journal may be unwritable: a full disk), or until the training process dies; then it waits
for delivery up to ``stop_timeout``, ends the backend runs and reports its counters (``Done``).
Training pays only for an append per event; conversion, OpenTelemetry and export use the other core.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.metrics import Observation
from opentelemetry.sdk.trace import SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tracelet_otel._backend import BackendRunHandle
from tracelet_otel._child import Done, Failed, Finish, Ready, become_helper, exit_helper, try_lock
from tracelet_otel.capture.journal import Frame, FrameType, JournalReader, ReleasedStart, decode_console
from tracelet_otel.conversion import EventConverter
from tracelet_otel.delivery import Delivery, TrackerSpanExporter
from tracelet_otel.delivery.counters import delivery_observations
from tracelet_otel.delivery.worker import EVENT_FILES_KEY
from tracelet_otel.errors import RunBusy, RunNotStarted
from tracelet_otel.eventfiles import event_files, holds_values
from tracelet_otel.layout import RunDirectory
from tracelet_otel.payloads import ArtifactStore, RunPayloadStore
from tracelet_otel.records import Record, SourcePosition
from tracelet_otel.reports import DropReason, RunStatus
from tracelet_otel.runspec import RunSpec
from tracelet_otel.telemetry import semconv
from tracelet_otel.telemetry.emitter import Emitter
from tracelet_otel.telemetry.providers import make_meter_provider, make_resource

__all__ = ["Agent", "main"]

_logger = logging.getLogger("tracelet_otel.agent")

IDLE_POLL_S = 0.02
FLUSH_POLL_S = 0.2
PAYLOAD_CLEANUP_EVERY_S = 0.5
PROGRESS_EVERY_S = 5.0
RELEASE_EVERY_S = 0.5
RELEASE_EVERY_BYTES = 2**20


class Agent:
    """Converts one run's journal into OpenTelemetry and has it delivered.

    ``start_logging`` runs one beside training; ``tracelet-otel replay`` runs one in the foreground for a run
    whose agent died. A lock on the run directory keeps the two from ever working on the same run.
    """

    def __init__(self, run_dir: str) -> None:
        """Raises:
        RunBusy: another process is delivering the run.
        RunNotStarted: a backend could not open its run.
        """
        self.run_dir = run_dir
        self._layout = RunDirectory(run_dir)
        lock = try_lock(self._layout.lock)
        if lock is None:
            raise RunBusy(f"run {self._layout.run_id} is being delivered by another process")
        self._lock = lock
        self.spec = RunSpec.load(self._layout.spec)
        self._started = os.stat(self._layout.spec).st_mtime  # start_logging wrote it, then started this agent
        resource = make_resource(self.spec.project, self.spec.exp_name, self.spec.run_id)
        self._meter_provider = make_meter_provider(resource)
        self.exporters: dict[str, TrackerSpanExporter] = {}
        for name in self.spec.backends:
            path = self._layout.spool(name)
            # A spool that exists already names its run: the agent was restarted, keep delivering there.
            delivery = None if os.path.exists(path) else Delivery(
                name, None, dict(self.spec.options.backend_options or {}), dataclasses.asdict(self.spec.info))
            self.exporters[name] = TrackerSpanExporter(path, delivery, self.spec.options.max_spool_size)

        # The workers open their runs in parallel; then every span reaches every spool synchronously.
        try:
            self.backend_runs: dict[str, BackendRunHandle] = {
                name: exporter.wait_ready() for name, exporter in self.exporters.items()}
        except Exception:
            # No empty runs left behind: the runs that did open are undone, and nothing is left to replay.
            for exporter in self.exporters.values():
                exporter.discard()
            self._lock.close()
            raise
        self._span_processor = SynchronousMultiSpanProcessor()
        for exporter in self.exporters.values():
            self._span_processor.add_span_processor(SimpleSpanProcessor(exporter))
        self._emitter = Emitter(self._span_processor, resource, self._meter_provider)
        self._meter_provider.get_meter("tracelet_otel").create_observable_counter(
            semconv.METRIC_DELIVERY, callbacks=[self._observe_delivery], unit="{record}",
            description="Records per backend: spooled, delivered, retried, and dropped by reason")
        self._payloads: RunPayloadStore | None = None  # the default store, which this agent cleans up
        store: ArtifactStore
        if self.spec.options.artifact_store:  # a store the user named is theirs: nothing in it is removed
            store = ArtifactStore(self.spec.options.artifact_store)
        else:
            store = self._payloads = RunPayloadStore(self._layout.payloads, self.spec.options.max_spool_size)
        self._converter = EventConverter(self.spec.options, store, self.spec.rank)
        self._delivered_at_cleanup: list[int] | None = None
        self._next_cleanup = 0.0
        self._parent = os.getppid()
        self.end_status: str | None = None  # set by the journal's end marker or by request_end
        self._end_requested = threading.Event()
        self._requested_status = RunStatus.FINISHED
        self.damaged_journal_stretches = 0
        self._captured_files: set[str] = set()  # the event files of the writers the capture announced
        self._captured_logdirs: set[str] = set()  # their logdirs, checked at the end for files it did not see

    def request_end(self, status: str) -> None:
        """Training has stopped (``stop_logging``): end once everything journaled so far is converted."""
        self._requested_status = status
        self._end_requested.set()

    def follow(self, *, until_end: bool = True) -> None:
        """Convert and spool the run's journals: those of earlier attempts (a restarted job) whole, first; then
        the last one, and with ``until_end`` keep following it until its end marker."""
        journals = list(self._layout.journals().items())
        for attempt, path in journals[:-1]:
            source = self._open_journal(attempt, path)
            self._follow(source, live=False)
            self._forget_if_spooled(source)
            self.end_status = None  # that attempt ended, and the run went on
        if journals:
            self._follow(self._open_journal(*journals[-1]), live=until_end)

    def _open_journal(self, attempt: int, path: str) -> _Journal:
        journal = _Journal(path, RunDirectory.journal_source(attempt))
        for writer in journal.released.writers.values():
            self._register_writer(writer)
        self._converter.dropped.update(journal.released.dropped)
        # Each spool records how far into the journal its records go, with them. After a crash the journal is
        # converted again from the spool that is furthest behind, and spans end where any spool stopped, so that
        # a spool further ahead is never sent a span it has half of (it refuses whole spans it has already).
        reached = [self._position(exporter, journal.source) for exporter in self.exporters.values()]
        journal.resume_offset = min(reached, default=0)
        journal.span_ends = set(reached)
        return journal

    @staticmethod
    def _position(exporter: TrackerSpanExporter, source: str) -> int:
        return exporter.spool.positions().get(source, SourcePosition(source, 0)).offset

    def _follow(self, journal: _Journal, *, live: bool) -> None:
        """Convert one journal; ``live``: it is the current attempt's, followed until its end marker, the end of
        training, or the death of the training process."""
        reader = JournalReader(journal.path, journal.released.start)
        try:
            while True:
                end_requested = self._end_requested.is_set()  # before reading: the journal is complete then
                frames = reader.frames(complete=not live)
                self._convert(journal, frames)
                self._remove_delivered_payloads()
                self._release_converted(journal)
                if live and self.end_status is not None:
                    return
                if frames:
                    continue
                if not live:
                    return
                # Training was killed (deliver what it journaled), or stopped.
                if end_requested or os.getppid() != self._parent:
                    while self.end_status is None:
                        offset = reader.offset
                        self._convert(journal, reader.frames(complete=True))
                        if reader.offset == offset:
                            break
                    if self.end_status is None and end_requested:
                        self.end_status = self._requested_status
                    return
                self._end_requested.wait(IDLE_POLL_S)
        finally:
            self.damaged_journal_stretches += reader.damaged_stretches
            reader.close()

    def _convert(self, journal: _Journal, frames: list[Frame]) -> None:
        for frame in frames:
            if frame.type == FrameType.WRITER:
                body = frame.json()
                self._register_writer(body)
                journal.writers[body["id"]] = (frame.end, body)
            elif frame.type == FrameType.END:
                self.end_status = frame.payload.decode() or RunStatus.FINISHED
                unfinished = self._converter.console_end(time.time())
                if unfinished and frame.end > journal.resume_offset:
                    self._emitter.emit(unfinished, SourcePosition(journal.source, frame.end))
            elif frame.type == FrameType.DROPPED:
                body = frame.json()
                self._converter.dropped[body["reason"]] += body["count"]
                journal.dropped.append((frame.end, body["reason"], body["count"]))
            else:
                journal.last_event_end = frame.end
                if frame.end <= journal.resume_offset:
                    continue  # spooled before a crash of the agent
                self._emitter.emit(self._records(frame), SourcePosition(journal.source, frame.end))
                if frame.end in journal.span_ends:
                    self._emitter.end_span()
        if frames:
            self._emitter.end_span()

    def _register_writer(self, body: dict[str, Any]) -> None:
        self._converter.register_writer(body)
        event_file = body.get("event_file")
        if event_file and event_file not in self._captured_files:
            self._captured_files.add(event_file)
            self._captured_logdirs.add(body["logdir"])
            # For the backends that keep the files themselves, read when their runs end (replay included).
            files = {"root": self._converter.root, "files": sorted(self._captured_files)}
            for exporter in self.exporters.values():
                exporter.spool.set_meta(EVENT_FILES_KEY, files)

    def _uncaptured_event_files(self) -> list[str]:
        """Event files below the captured writers' logdirs, written since the run started, whose values did not
        come through the capture (a writer we do not patch, a spawned process that never started a run)."""
        import fsspec  # only here: the agent starts without it

        fs = fsspec.filesystem("file")
        found: list[str] = []
        for logdir in sorted(self._captured_logdirs):
            if any(logdir.startswith(other + os.sep) for other in self._captured_logdirs):
                continue  # walked with the logdir above it
            try:
                candidates = [path for path in event_files(fs, logdir) if path not in self._captured_files
                              and os.stat(path).st_mtime >= self._started]
                found.extend(path for path in candidates if holds_values(fs, path))
            except OSError as error:  # a logdir removed meanwhile: nothing to say about it
                _logger.debug("tracelet-otel: could not look for uncaptured event files in %s: %s", logdir, error)
        return found

    def _release_converted(self, journal: _Journal) -> None:
        """Free the start of the journal that every spool holds: a run's disk is bounded by what waits, not by
        how long it runs. At most every ``RELEASE_EVERY_S``, and once ``RELEASE_EVERY_BYTES`` more are spooled (a
        quarter of ``max_spool_size`` if that is less: the journal counts against it)."""
        if not journal.releasable or time.monotonic() < journal.next_release:
            return
        journal.next_release = time.monotonic() + RELEASE_EVERY_S
        start = min(self._position(exporter, journal.source) for exporter in self.exporters.values())
        limit = self.spec.options.max_spool_size
        if start - journal.released.start < min(RELEASE_EVERY_BYTES, limit // 4 if limit else RELEASE_EVERY_BYTES):
            return
        writers = {writer_id: body for writer_id, (end, body) in journal.writers.items() if end <= start}
        dropped = Counter(journal.released.dropped)
        for end, reason, count in journal.dropped:
            if end <= start:
                dropped[reason] += count
        try:
            journal.releasable = journal.released.release(start, writers, dropped)
        except OSError as error:
            journal.releasable = False
            _logger.warning("tracelet-otel: could not free the converted part of %s (%s); it takes disk until the "
                            "run ends", journal.path, error)
            return
        journal.dropped = [frame for frame in journal.dropped if frame[0] > start]
        if not journal.releasable:
            _logger.warning("tracelet-otel: the file system of %s cannot free part of a file; the capture journal "
                            "keeps every value until the run ends, and counts against max_spool_size",
                            os.path.dirname(journal.path))

    def _forget_if_spooled(self, journal: _Journal) -> None:
        """An earlier attempt's journal goes once every spool holds all its records."""
        if all(self._position(exporter, journal.source) >= journal.last_event_end
               for exporter in self.exporters.values()):
            os.remove(journal.path)
            journal.released.remove()

    def _records(self, frame: Frame) -> list[Record]:
        """One frame's records; a frame that cannot be read is counted, never fatal (replay would stop there)."""
        try:
            if frame.type == FrameType.CONSOLE:
                return self._converter.console(*decode_console(frame.payload))
            if frame.type == FrameType.EVENT:
                return self._converter.convert_event(*frame.event())
            if frame.type == FrameType.EMBEDDING:
                return self._converter.convert_embedding(frame.json())
        except Exception as error:
            self._converter.dropped[DropReason.UNREADABLE_EVENT] += 1
            _logger.warning("tracelet-otel: an event could not be read and is counted as dropped: %s", error)
        return []

    @property
    def status(self) -> str:
        """How the backend runs end: as ``stop_logging`` said (``FINISHED``), ``KILLED`` when training died
        first, or ``DISCARD`` when ``start_logging`` failed."""
        return self.end_status or RunStatus.KILLED

    def undelivered(self) -> dict[str, int]:
        return {name: exporter.spool.count() for name, exporter in self.exporters.items()}

    def finish(self, timeout: float, on_progress: Callable[[dict[str, int]], None] | None = None) -> dict[str, Any]:
        """Deliver for up to ``timeout`` seconds, end the backend runs, and say what happened.

        ``on_progress`` gets the undelivered count per backend a few times a second; by default a line is
        printed every few seconds.
        """
        self._emitter.end_span()
        if self.status == RunStatus.DISCARD:
            timeout = 0.0
        # Every delivery process drains its spool and ends its run itself; this waits for them all at once, and
        # returns the moment the last one is done.
        for exporter in self.exporters.values():
            exporter.begin_close(self.status, timeout)
        progress = on_progress or _ProgressLines()
        while True:
            progress(self.undelivered())
            self._remove_delivered_payloads()
            if all(exporter.wait_closed(FLUSH_POLL_S) for exporter in self.exporters.values()):
                break
        dropped = dict(self._converter.dropped)
        if self.damaged_journal_stretches:  # the values in them are lost; how many cannot be known
            dropped[DropReason.DAMAGED_JOURNAL] = self.damaged_journal_stretches
        reports = {name: exporter.report() for name, exporter in self.exporters.items()}
        uncaptured = self._uncaptured_event_files()
        self._span_processor.shutdown()
        self._meter_provider.shutdown()
        # A continued run is never discarded: what an earlier attempt left waits for the next one, or replay.
        discarded = self.status == RunStatus.DISCARD and self.spec.attempt == 1
        if discarded or all(report.undelivered == 0 and report.finished for report in reports.values()):
            shutil.rmtree(self.run_dir, ignore_errors=True)  # delivered: nothing left to replay, payloads included
        else:
            self._remove_delivered_payloads(recheck=True)  # replay needs only what still waits
        self._lock.close()
        return {"backends": {name: report.to_json() for name, report in reports.items()},
                "capture": {"dropped": dropped, "uncaptured": uncaptured}}

    def _remove_delivered_payloads(self, recheck: bool = False) -> None:
        """Remove from the default store the payloads every backend has; a payload stays while any spool holds
        a record that references it, so that a replay after a crash finds it.

        Runs on the thread that converts, between conversions: every payload put by then has its records in
        every spool (or counted as dropped). Looks at most every ``PAYLOAD_CLEANUP_EVERY_S``, and only when some
        backend delivered something since (``recheck``: now, whatever was delivered).
        """
        if self._payloads is None or (not recheck and time.monotonic() < self._next_cleanup):
            return
        self._next_cleanup = time.monotonic() + PAYLOAD_CLEANUP_EVERY_S
        spools = [exporter.spool for exporter in self.exporters.values()]
        delivered = [spool.delivered_seq() for spool in spools]
        if delivered == self._delivered_at_cleanup and not recheck:
            return
        self._delivered_at_cleanup = delivered
        self._payloads.remove_unless(lambda sha256: any(spool.holds_blob(sha256) for spool in spools))

    def _observe_delivery(self, options: Any) -> Iterator[Observation]:
        for name, exporter in self.exporters.items():
            yield from delivery_observations(name, exporter.spool)


@dataclass
class _Journal:
    """One journal being converted, and what is known of it."""

    path: str
    source: str  # the name the spools record its position under
    resume_offset: int = 0  # its events up to here are in every spool
    span_ends: set[int] = field(default_factory=set)
    writers: dict[int, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # id -> (frame end, writer)
    dropped: list[tuple[int, str, int]] = field(default_factory=list)  # (frame end, reason, count), not released
    last_event_end: int = 0
    released: ReleasedStart = field(init=False)
    releasable: bool = True
    next_release: float = 0.0

    def __post_init__(self) -> None:
        self.released = ReleasedStart(self.path)
        self.writers = {writer_id: (0, body) for writer_id, body in self.released.writers.items()}


class _ProgressLines:
    """One line on stderr every few seconds while delivery takes long."""

    def __init__(self) -> None:
        self._next = time.monotonic() + PROGRESS_EVERY_S

    def __call__(self, undelivered: dict[str, int]) -> None:
        if time.monotonic() >= self._next and any(undelivered.values()):
            self._next = time.monotonic() + PROGRESS_EVERY_S
            left = ", ".join(f"{count} to {name}" for name, count in undelivered.items() if count)
            print(f"tracelet-otel: delivering, {left} to go...", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    run_dir = (argv or sys.argv[1:])[0]
    channel = become_helper()
    logging.getLogger("opentelemetry.attributes").setLevel(logging.ERROR)
    try:
        agent = Agent(run_dir)
    except Exception as error:
        channel.send(Failed(str(error) if isinstance(error, RunNotStarted) else f"{type(error).__name__}: {error}"))
        return 1
    channel.send(Ready(agent.backend_runs))

    def follow_control() -> None:
        """``Finish`` from the training process; the end of input means it is gone."""
        for message in channel.commands():
            if isinstance(message, Finish):
                agent.request_end(message.status)

    threading.Thread(target=follow_control, name="tracelet-otel-control", daemon=True).start()
    agent.follow()
    channel.send(Done(agent.finish(agent.spec.options.stop_timeout)))
    return 0


if __name__ == "__main__":
    exit_helper(main())
