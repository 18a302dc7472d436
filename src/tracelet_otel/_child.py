"""Helper processes, and the one protocol every helper speaks with the process that started it.

The helpers are the agent (``python -m tracelet_otel.agent RUN_DIR``, started by ``start_logging``) and the
delivery process (``python -m tracelet_otel.delivery BACKEND``, started by each tracker exporter of an agent, and
by the bridge). Both directions carry the same kind of line: one JSON object with a ``type``, one of the
messages below. The parent writes on the helper's stdin:

* :class:`Deliver` ``spool``: records were appended to that spool; deliver them (opening its run first);
* :class:`Finish` ``status, timeout, spool``: nothing more will come; deliver for up to ``timeout`` seconds
  (None: until everything is delivered), then end the run with ``status``. The agent takes it without a spool.

A bridge's delivery process (``--bridge``) delivers the spools it is given, and only those
(:mod:`tracelet_otel.delivery.processes` decides which process delivers which):

* :class:`Take` ``spool``: deliver this spool from now on; ``Deliver`` and ``Finish`` then concern it;
* :class:`Release` ``spool``: stop after the batch in flight and let go of the run without ending it (another
  spool waits for this process); the records left wait in the spool for the spool's next ``Take``.

The helper answers on a pipe of its own (its descriptor is named by ``TRACELET_OTEL_HELPER``), so that a
library or a ``sitecustomize`` that prints at import cannot corrupt the protocol; its stdout goes to stderr:

* :class:`Ready` ``runs``: the helper is up; the agent names each backend's run, the delivery process none;
* :class:`Opened` ``spool, run``: the delivery process opened (created or reopened) the spool's run;
* :class:`Ended` ``spool, status``: it ended the spool's run, or, with no status, stopped at the deadline with
  records left in the spool (``tracelet-otel replay`` delivers them);
* :class:`Released` ``spool``: a bridge's delivery process no longer delivers the spool (its run ended, it was
  let go, or another replica took the run over); until the next ``Take`` it ignores what concerns the spool;
* :class:`Done` ``summary``: the agent delivered and ended its runs; its counters;
* :class:`Failed` ``error, spool``: the helper (no spool) or the delivery of one spool could not start;
* :class:`Log` ``name, level, message``: a warning of the helper, re-emitted by the parent into the logging the
  user configured, so that a worker's warning travels worker -> agent -> training.

A helper never starts a run and never patches anything, whatever its environment says: the variable marks it
(the instrumentor honours the mark), and it starts without ``opentelemetry-instrument``'s auto-instrumentation
directory on its ``PYTHONPATH``. That tool removes the directory for child processes itself, but compares paths
without resolving links, so through a linked virtualenv every child would run all instrumentors at start-up.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import fcntl
import importlib.util
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar, NoReturn, TextIO

from tracelet_otel._backend import BackendRunHandle

__all__ = ["BACKGROUND_NICENESS", "HELPER_VARIABLE", "Child", "Deliver", "Done", "Ended", "Failed", "Finish",
           "HelperChannel", "Log", "Message", "Opened", "Ready", "Release", "Released", "Take", "become_helper",
           "exit_helper", "is_helper_process", "python_path_without_auto_instrumentation", "try_lock"]

_logger = logging.getLogger("tracelet_otel")

BACKGROUND_NICENESS = 5
HELPER_VARIABLE = "TRACELET_OTEL_HELPER"  # set in helpers only: the descriptor of their protocol pipe


# -- messages ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Message:
    kind: ClassVar[str]  # the line's "type"
    _kinds: ClassVar[dict[str, type[Message]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Message._kinds[cls.kind] = cls

    def to_line(self) -> str:
        return json.dumps({"type": self.kind, **self._fields()}) + "\n"

    def _fields(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def _from_fields(cls, body: dict[str, Any]) -> Message:
        return cls(**body)

    @staticmethod
    def from_line(line: str) -> Message:
        """Raises:
        ValueError: the line is not one of the messages (a library printed where it should not).
        """
        try:
            body = json.loads(line)
            return Message._kinds[body.pop("type")]._from_fields(body)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a tracelet-otel helper message: {line[:200]!r}") from error


@dataclass(frozen=True)
class Deliver(Message):
    kind = "deliver"
    spool: str


@dataclass(frozen=True)
class Finish(Message):
    kind = "finish"
    status: str
    timeout: float | None = None
    spool: str | None = None


@dataclass(frozen=True)
class Take(Message):
    kind = "take"
    spool: str


@dataclass(frozen=True)
class Release(Message):
    kind = "release"
    spool: str


@dataclass(frozen=True)
class Ready(Message):
    kind = "ready"
    runs: Mapping[str, BackendRunHandle] = field(default_factory=dict)

    def _fields(self) -> dict[str, Any]:
        return {"runs": {name: run.to_json() for name, run in self.runs.items()}}

    @classmethod
    def _from_fields(cls, body: dict[str, Any]) -> Message:
        return cls({name: BackendRunHandle.from_json(run) for name, run in body["runs"].items()})


@dataclass(frozen=True)
class Opened(Message):
    kind = "opened"
    spool: str
    run: BackendRunHandle

    def _fields(self) -> dict[str, Any]:
        return {"spool": self.spool, "run": self.run.to_json()}

    @classmethod
    def _from_fields(cls, body: dict[str, Any]) -> Message:
        return cls(body["spool"], BackendRunHandle.from_json(body["run"]))


@dataclass(frozen=True)
class Ended(Message):
    kind = "ended"
    spool: str
    status: str | None


@dataclass(frozen=True)
class Released(Message):
    kind = "released"
    spool: str


@dataclass(frozen=True)
class Done(Message):
    kind = "done"
    summary: Mapping[str, Any]


@dataclass(frozen=True)
class Failed(Message):
    kind = "failed"
    error: str
    spool: str | None = None


@dataclass(frozen=True)
class Log(Message):
    kind = "log"
    name: str
    level: int
    message: str


# -- the helper's side -------------------------------------------------------------------------------------------
def is_helper_process() -> bool:
    return HELPER_VARIABLE in os.environ


class HelperChannel:
    """A helper's end of the protocol: messages out on its pipe (from any thread), commands in from stdin."""

    def __init__(self, pipe: TextIO) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()

    def send(self, message: Message) -> None:
        with self._lock:
            self._pipe.write(message.to_line())
            self._pipe.flush()

    def commands(self) -> Iterator[Message]:
        """The parent's messages until its end of input (it stopped, or died)."""
        for line in sys.stdin:
            try:
                yield Message.from_line(line)
            except ValueError as error:  # never let one odd line end the conversation
                _logger.error("tracelet-otel: ignored a control line: %s", error)


class _LogForwarder(logging.Handler):
    """In a helper process: sends tracelet_otel warnings to the parent instead of stderr."""

    def __init__(self, channel: HelperChannel) -> None:
        super().__init__(logging.WARNING)
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        self._channel.send(Log(record.name, record.levelno, record.getMessage()))


def become_helper() -> HelperChannel:
    """Set up a helper process; returns its end of the protocol.

    tracelet_otel warnings go to the parent, and the process yields to training when cores are short.
    """
    channel = HelperChannel(os.fdopen(int(os.environ[HELPER_VARIABLE]), "w", buffering=1))
    logger = logging.getLogger("tracelet_otel")
    logger.addHandler(_LogForwarder(channel))
    logger.propagate = False
    os.nice(BACKGROUND_NICENESS)
    return channel


def exit_helper(status: int) -> NoReturn:
    """End a helper whose work is done: its exit handlers run (W&B's shuts its service down) and its streams are
    flushed, but the interpreter's teardown of every module is skipped: with MLflow loaded it takes ~0.6 s, which
    ``stop_logging`` would wait for."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def try_lock(path: str) -> IO[str] | None:
    """An exclusive lock on ``path``, held until the returned file is closed; None if another process has it."""
    lock = open(path, "a")  # noqa: SIM115 - the caller holds it open as long as it needs the lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


# -- the parent's side -------------------------------------------------------------------------------------------
def _auto_instrumentation_directory() -> str | None:
    try:
        spec = importlib.util.find_spec("opentelemetry.instrumentation.auto_instrumentation")
    except ImportError:
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return os.path.realpath(locations[0]) if locations else None


def python_path_without_auto_instrumentation(python_path: str) -> str:
    """``python_path`` less every entry that is, through links or not, the directory whose ``sitecustomize``
    makes ``opentelemetry-instrument`` instrument a Python process."""
    directory = _auto_instrumentation_directory()
    entries = python_path.split(os.pathsep)
    return os.pathsep.join(entry for entry in entries if not entry or os.path.realpath(entry) != directory)


def _helper_environment(protocol_fd: int) -> dict[str, str]:
    environment = {**os.environ, HELPER_VARIABLE: str(protocol_fd)}
    if "PYTHONPATH" in environment:
        environment["PYTHONPATH"] = python_path_without_auto_instrumentation(environment["PYTHONPATH"])
    return environment


class Child:
    """A helper process, seen from the process that started it."""

    def __init__(self, command: list[str]) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=_stderr_fd(), text=True,
                                            pass_fds=(write_fd,), env=_helper_environment(write_fd))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the child has its copy: end of file once it exits
        self._protocol = os.fdopen(read_fd, "r")
        self._messages: queue.Queue[Message | None] = queue.Queue()
        threading.Thread(target=self._read, name="tracelet-otel-child-reader", daemon=True).start()

    def _read(self) -> None:
        with self._protocol:
            for line in self._protocol:
                try:
                    message = Message.from_line(line)
                except ValueError as error:  # not ours: never let one odd line end the conversation
                    _logger.debug("tracelet-otel: %s", error)
                    continue
                if isinstance(message, Log):
                    logging.getLogger(message.name).log(message.level, message.message)
                else:
                    self._messages.put(message)
        self._messages.put(None)  # end of output

    def receive(self, timeout: float) -> Message:
        """The next message; :class:`Failed` if none comes in time or the process ended."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            return Failed(f"no answer within {timeout:.0f}s")
        if message is None:
            self._messages.put(None)  # every later call learns it too
            return Failed(f"the process exited with status {self.process.wait()}")
        return message

    def send(self, message: Message) -> None:
        """A helper that is gone has nothing to be told (its spool keeps everything)."""
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self.process.stdin.write(message.to_line())  # type: ignore[union-attr]
            self.process.stdin.flush()  # type: ignore[union-attr]

    def end_input(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.process.stdin.close()  # type: ignore[union-attr]

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; past ``timeout`` it is killed. Its pipes are closed either way."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        self.end_input()
        return status

    def is_running(self) -> bool:
        return self.process.poll() is None


def _stderr_fd() -> int:
    """Where a helper's stdout goes: whatever libraries print there is not protocol."""
    try:
        return sys.__stderr__.fileno()  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return subprocess.DEVNULL
