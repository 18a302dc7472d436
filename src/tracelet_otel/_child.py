"""Helper processes and the JSON-lines protocol they speak on a private copy of stdout.

The agent and the delivery workers each report to the process that started them with one JSON object a line:
their own messages (``ready``, ``done``, ``error``), and their warnings as ``{"log": ...}``, which the reader
re-emits so a worker's warning travels worker -> agent -> training, into the logging the user configured.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import subprocess
import threading
from typing import IO, Any, TextIO

__all__ = ["BACKGROUND_NICENESS", "Child", "LogForwarder", "become_helper", "try_lock"]

BACKGROUND_NICENESS = 5


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

    A private copy of stdout carries the protocol; whatever libraries print goes to stderr; tracelet_otel
    warnings go to the parent; and the process yields to training when cores are short.
    """
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
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
    """A helper process, seen from the process that started it."""

    def __init__(self, command: list[str], stdin: int | IO[Any] = subprocess.DEVNULL) -> None:
        self.process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, text=True)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, name="tracelet-otel-child-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message = json.loads(line)
            log = message.get("log")
            if log is not None:
                logging.getLogger(log["name"]).log(log["level"], log["message"])
            else:
                self._messages.put(message)
        self._messages.put({})  # end of output

    def message(self, timeout: float) -> dict[str, Any]:
        """The next message, or ``{"error": ...}`` if none comes in time or the process ended."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            return {"error": f"no answer within {timeout:.0f}s"}
        return message or {"error": f"the process exited with status {self.process.wait()}"}
