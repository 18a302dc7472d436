"""The part of tracelet-otel that runs in the training process.

The patched methods call :meth:`Capture.on_event` with the event TensorBoard just handed to its event file;
that appends to a deque and returns. A background thread serializes the events into the capture journal.
Conversion, OpenTelemetry and export all happen in the agent process, so they never compete with training
for the GIL.

In a forked child (a ``multiprocessing`` worker, a DataLoader worker) the capture goes on without a thread:
each event is appended to the parent's journal at once, because such children often end with ``os._exit``.
tensorboardX's writers send a child's events to the process that holds the writer thread (its
``GlobalSummaryWriter`` is built on that), so they are in the event file and are journaled from the child,
exactly once. torch's writer keeps its thread in the parent and a child's events never reach the file: those
are counted, not delivered, as TensorBoard itself loses them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing.queues
import os
import threading
import time
import weakref
from collections import Counter
from typing import Any, Protocol

from tracelet_otel.capture import journal
from tracelet_otel.reports import DropReason, RunStatus

__all__ = ["Capture", "EventSink", "call_context"]

_logger = logging.getLogger("tracelet_otel.capture")

DRAIN_INTERVAL_S = 0.05
# Far above what the drain thread ever lags behind (it writes ~1M small events/s); a bound, not a buffer size.
MAX_PENDING_EVENTS = 2_000_000
CLOSE_TIMEOUT_S = 30.0
# Writer ids a forked child gives its writers, apart from the parent's (1, 2, ...) and from other children's.
_CHILD_WRITER_IDS = 2**31


_CONSOLE = object()  # marks console output among the pending events


class _CallContext(threading.local):
    """What SummaryWriter method the current thread is inside, for calls that write through other writers."""

    current: tuple[Any, ...] | None = None


call_context = _CallContext()


class EventSink(Protocol):
    """Where the patched methods send what TensorBoard writes (``capture.install``)."""

    def on_event(self, file_writer: Any, event: Any) -> None:
        """``event`` was just handed to ``file_writer``'s event file."""

    def on_embedding(self, logdir: str, tag: str, step: Any, subdir: str) -> None:
        """``add_embedding`` wrote its files into ``<logdir>/<subdir>``."""


class Capture:
    """Between the patched methods and the journal. ``max_journal_bytes`` bounds the disk the journal may take;
    the agent frees what it has converted (``journal.ReleasedStart``), so that is what waits for conversion."""

    def __init__(self, journal_path: str, max_journal_bytes: int | None = None) -> None:
        self._journal_path = journal_path
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._writer_ids: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._last_writer_id = 0
        self._journal = journal.JournalWriter(journal_path)
        self._wake = threading.Event()
        self._closed = False
        self._max_journal_bytes = max_journal_bytes
        self.dropped: Counter[str] = Counter()  # reason -> values
        self._owner_pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="tracelet-otel-capture", daemon=True)
        self._thread.start()

    # -- training thread -------------------------------------------------------------------------------------
    def on_event(self, file_writer: Any, event: Any) -> None:
        if len(self._pending) >= MAX_PENDING_EVENTS:
            self._drop(DropReason.CAPTURE_QUEUE_FULL)
        elif not self._closed:
            self._pending.append((file_writer, event, call_context.current))

    def on_console(self, fd: int, wall_time: float, data: bytes) -> None:
        """What the training process wrote to fd 1 or 2 (``console.ConsoleTee``)."""
        if len(self._pending) >= MAX_PENDING_EVENTS:
            self._drop(DropReason.CAPTURE_QUEUE_FULL)
        elif not self._closed:
            self._pending.append((_CONSOLE, (fd, wall_time, data), None))

    def on_embedding(self, logdir: str, tag: str, step: Any, subdir: str) -> None:
        if self._closed:
            return
        self._pending.append((None, {"logdir": logdir, "tag": tag, "step": step, "subdir": subdir,
                                     "wall_time": time.time()}, None))

    def _drop(self, reason: str, count: int = 1) -> None:
        if reason not in self.dropped:
            _logger.warning("tracelet-otel: %s; further values are counted as dropped", reason)
        self.dropped[reason] += count

    # -- background ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(DRAIN_INTERVAL_S)
            self._drain()

    def _drain(self) -> None:
        chunks = []
        pending = self._pending
        debug = _logger.isEnabledFor(logging.DEBUG)
        while pending:
            file_writer, body, call = pending.popleft()
            try:
                if file_writer is None:
                    chunks.append(journal.encode_json(journal.FrameType.EMBEDDING, body))
                    continue
                if file_writer is _CONSOLE:
                    chunks.append(journal.encode_console(*body))
                    continue
                writer_id = self._writer_ids.get(file_writer)
                if writer_id is None:
                    writer_id = self._register(file_writer, call, chunks)
                chunks.append(journal.encode_event(writer_id, body.SerializeToString()))
                if debug:
                    _logger.debug("captured %s", _describe(body))
            except Exception:  # a bad event must not stop the capture of the others
                _logger.exception("tracelet-otel: could not capture an event")
                self.dropped[DropReason.CAPTURE_ERROR] += 1
        if self._max_journal_bytes is not None:
            chunks = self._within_limit(chunks)
        if not chunks:
            return
        data = b"".join(chunks)
        try:
            self._journal.append(data)
        except OSError as error:  # a full or failing disk must not stop training
            if DropReason.JOURNAL_WRITE_FAILED not in self.dropped:
                _logger.error("tracelet-otel: cannot write the capture journal (%s); values are counted as dropped",
                              error)
            self.dropped[DropReason.JOURNAL_WRITE_FAILED] += sum(map(journal.is_event, chunks))
            # The failed chunk was taken back out of the journal, writer frames included: writers announce
            # themselves again before their next event.
            self._writer_ids = weakref.WeakKeyDictionary()

    def _within_limit(self, chunks: list[bytes]) -> list[bytes]:
        """The frames that fit under max_spool_size; writer frames always do, so later events keep their names."""
        kept, size, dropped = [], self._journal.allocated_bytes(), 0
        for chunk in chunks:
            if journal.is_event(chunk) and size + len(chunk) > self._max_journal_bytes:  # type: ignore[operator]
                dropped += 1
                continue
            kept.append(chunk)
            size += len(chunk)
        if dropped:
            self._drop(DropReason.SPOOL_FULL, dropped)
        return kept

    def _register(self, file_writer: Any, call: tuple[Any, ...] | None, chunks: list[bytes]) -> int:
        self._last_writer_id += 1
        writer_id = self._last_writer_id
        self._writer_ids[file_writer] = writer_id
        logdir = os.path.abspath(str(file_writer.get_logdir()))
        chunks.append(journal.encode_json(journal.FrameType.WRITER, {
            "id": writer_id, "logdir": logdir, "call": list(call) if call else None,
            "event_file": _event_file(file_writer)}))
        return writer_id

    def close(self, status: str = RunStatus.FINISHED, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Journal everything captured so far, then the end marker with the status the runs end with.

        Returns whether the journal is complete; never raises (it runs in ``stop_logging`` and at exit).
        """
        if self._closed:
            return False
        self._closed = True
        if os.getpid() != self._owner_pid:  # a forked child: the journal belongs to the parent
            return False
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # stuck on a hung disk: what it holds is counted, not waited for
            _logger.error("tracelet-otel: the capture thread did not finish within %.0fs", timeout)
            self._drop(DropReason.CAPTURE_THREAD_STUCK, sum(1 for item in self._pending if item[0] is not None))
            return False
        try:
            self._drain()
            self._journal.append(journal.encode_frame(journal.FrameType.END, status.encode()))
            return True
        except Exception as error:
            _logger.error("tracelet-otel: could not end the capture journal (%s)", error)
            return False
        finally:
            with contextlib.suppress(OSError):
                self._journal.close()

    def continue_in_child(self) -> None:
        """After fork: the parent's thread and queue are not the child's; from now on each event is appended
        to the journal as it comes (see the module docstring)."""
        closed_in_parent, self._closed = self._closed, True
        self._pending = collections.deque()
        if closed_in_parent:
            return
        self._journal = None  # type: ignore[assignment]  # the parent's descriptor; opened anew on first use
        self._writer_ids = weakref.WeakKeyDictionary()
        self._last_writer_id = _CHILD_WRITER_IDS + (os.getpid() % 2**20) * 2**10
        self.on_event = self._append_from_child  # type: ignore[method-assign]
        self.on_embedding = self._append_embedding_from_child  # type: ignore[method-assign]

    def _append_from_child(self, file_writer: Any, event: Any) -> None:
        chunks: list[bytes] = []
        if not _reaches_event_file(file_writer):
            lost = {"reason": DropReason.LOST_IN_FORKED_CHILD, "count": 1}
            chunks.append(journal.encode_json(journal.FrameType.DROPPED, lost))
        else:
            writer_id = self._writer_ids.get(file_writer)
            if writer_id is None:
                writer_id = self._register(file_writer, call_context.current, chunks)
            chunks.append(journal.encode_event(writer_id, event.SerializeToString()))
        self._append_in_child(chunks)

    def _append_embedding_from_child(self, logdir: str, tag: str, step: Any, subdir: str) -> None:
        self._append_in_child([journal.encode_json(journal.FrameType.EMBEDDING, {
            "logdir": logdir, "tag": tag, "step": step, "subdir": subdir, "wall_time": time.time()})])

    def _append_in_child(self, chunks: list[bytes]) -> None:
        try:
            if self._journal is None:
                self._journal = journal.JournalWriter(self._journal_path)
            self._journal.append(b"".join(chunks))
        except OSError as error:  # the child cannot tell the parent; its stderr is the one place left
            if DropReason.JOURNAL_WRITE_FAILED not in self.dropped:
                _logger.error("tracelet-otel: a forked child (pid %d) cannot write the capture journal (%s); its "
                              "values are not delivered", os.getpid(), error)
            self.dropped[DropReason.JOURNAL_WRITE_FAILED] += 1
            self._writer_ids = weakref.WeakKeyDictionary()


def _reaches_event_file(file_writer: Any) -> bool:
    """Whether an event a forked child hands to this writer ends up in its event file."""
    event_writer = getattr(file_writer, "event_writer", None)
    if isinstance(getattr(event_writer, "_event_queue", None), multiprocessing.queues.Queue):
        return True  # tensorboardX: the process that holds the writer thread writes it
    worker = getattr(getattr(event_writer, "_async_writer", None), "_worker", None)
    return worker is None or worker.is_alive()  # torch: only a thread of this process writes


def _event_file(file_writer: Any) -> str | None:
    """The event file a writer writes: torch's and tensorboardX's writers keep its name privately, in different
    places. None where neither is found: its logdir is then not checked for values that bypassed the capture."""
    event_writer = getattr(file_writer, "event_writer", None)
    name = getattr(event_writer, "_file_name", None) or getattr(getattr(event_writer, "_ev_writer", None),
                                                                "_file_name", None)
    return os.path.abspath(name) if isinstance(name, str) else None


def _describe(event: Any) -> str:
    values = getattr(getattr(event, "summary", None), "value", ())
    tags = ", ".join(v.tag for v in values) or event.WhichOneof("what") or "event"
    return f"{tags} step={event.step}"
