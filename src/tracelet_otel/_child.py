"""Helper processes and the JSON-lines protocol they speak on a pipe of their own.

The agent and the delivery workers each report to the process that started them with one JSON object a line:
their own messages (``ready``, ``done``, ``error``), and their warnings as ``{"log": ...}``, which the reader
re-emits so a worker's warning travels worker -> agent -> training, into the logging the user configured.

The protocol pipe is passed to the helper alone (its descriptor is named by ``TRACELET_OTEL_HELPER``), so a
library or a ``sitecustomize`` that prints at import cannot corrupt it; the helper's stdout goes to stderr.

A helper never starts a run and never patches anything, whatever its environment says: the variable marks it
(the instrumentor honours the mark), and it starts without ``opentelemetry-instrument``'s auto-instrumentation
directory on its ``PYTHONPATH``. That tool removes the directory for child processes itself, but compares paths
without resolving links, so through a linked virtualenv every child would run all instrumentors at start-up.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from typing import IO, Any, TextIO

__all__ = ["BACKGROUND_NICENESS", "HELPER_VARIABLE", "Child", "LogForwarder", "become_helper",
           "is_helper_process", "python_path_without_auto_instrumentation", "try_lock"]

_logger = logging.getLogger("tracelet_otel")

BACKGROUND_NICENESS = 5
HELPER_VARIABLE = "TRACELET_OTEL_HELPER"  # set in helpers only: the descriptor of their protocol pipe


def is_helper_process() -> bool:
    return HELPER_VARIABLE in os.environ


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


class LogForwarder(logging.Handler):
    """In a helper process: sends tracelet_otel warnings to the parent instead of stderr."""

    def __init__(self, protocol: TextIO) -> None:
        super().__init__(logging.WARNING)
        self._protocol = protocol
        self._write_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = {"log": {"name": record.name, "level": record.levelno, "message": record.getMessage()}}
        with self._write_lock:
            self._protocol.write(json.dumps(message) + "\n")
            self._protocol.flush()


def become_helper() -> TextIO:
    """Set up a helper process; returns its protocol stream.

    tracelet_otel warnings go to the parent, and the process yields to training when cores are short.
    """
    protocol = os.fdopen(int(os.environ[HELPER_VARIABLE]), "w", buffering=1)
    logger = logging.getLogger("tracelet_otel")
    logger.addHandler(LogForwarder(protocol))
    logger.propagate = False
    os.nice(BACKGROUND_NICENESS)
    return protocol


def try_lock(path: str) -> IO[str] | None:
    """An exclusive lock on ``path``, held until the returned file is closed; None if another process has it."""
    lock = open(path, "a")  # noqa: SIM115 - the caller holds it open as long as it needs the lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


class Child:
    """A helper process, seen from the process that started it; ``stdin`` takes its control lines."""

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
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, name="tracelet-otel-child-reader", daemon=True).start()

    def _read(self) -> None:
        with self._protocol:
            for line in self._protocol:
                try:
                    message = json.loads(line)
                except ValueError:  # not ours: never let one odd line end the conversation
                    _logger.debug("tracelet-otel: ignored a line from a helper: %r", line[:200])
                    continue
                log = message.get("log") if isinstance(message, dict) else None
                if log is not None:
                    logging.getLogger(log["name"]).log(log["level"], log["message"])
                elif isinstance(message, dict):
                    self._messages.put(message)
        self._messages.put({})  # end of output

    def message(self, timeout: float) -> dict[str, Any]:
        """The next message, or ``{"error": ...}`` if none comes in time or the process ended."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            return {"error": f"no answer within {timeout:.0f}s"}
        return message or {"error": f"the process exited with status {self.process.wait()}"}

    def tell(self, line: str) -> None:
        """Send a control line; a helper that is gone has nothing to be told (its spool keeps everything)."""
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self.process.stdin.write(line + "\n")  # type: ignore[union-attr]
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


def _stderr_fd() -> int:
    """Where a helper's stdout goes: whatever libraries print there is not protocol."""
    try:
        return sys.__stderr__.fileno()  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return subprocess.DEVNULL
