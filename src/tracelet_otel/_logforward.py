"""Our warnings belong in the training process's logging, where the user configured it.

The agent and the delivery workers write theirs as JSON lines on their protocol stream; whoever reads that
stream re-emits them with :func:`relay`, so a worker's warning travels worker -> agent -> training.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, TextIO

__all__ = ["LogForwarder", "relay"]


class LogForwarder(logging.Handler):
    def __init__(self, protocol: TextIO) -> None:
        super().__init__(logging.WARNING)
        self._protocol = protocol
        self._write_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = {"log": {"name": record.name, "level": record.levelno, "message": record.getMessage()}}
        with self._write_lock:
            self._protocol.write(json.dumps(message) + "\n")
            self._protocol.flush()

    @classmethod
    def install(cls, protocol: TextIO) -> None:
        logger = logging.getLogger("tracelet_otel")
        logger.addHandler(cls(protocol))
        logger.propagate = False


def relay(message: dict[str, Any]) -> bool:
    """Re-emit a forwarded log message; False if the message is something else."""
    log = message.get("log")
    if log is None:
        return False
    logging.getLogger(log["name"]).log(log["level"], log["message"])
    return True
