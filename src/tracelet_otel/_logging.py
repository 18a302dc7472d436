"""Logging that tracelet-otel does the same way everywhere: warnings said once however often their cause repeats
(one per tag, per reason, per outage), and the first failure an SDK logs instead of raising."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable

__all__ = ["FirstFailure", "OnceLogger"]


class OnceLogger:
    """Logs each ``key``'s first message only; :meth:`forget` lets a key speak again (an outage that ended)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._said: set[Hashable] = set()
        self._lock = threading.Lock()

    def log(self, level: int, key: Hashable, message: str, *args: object) -> bool:
        """Returns whether this call logged."""
        with self._lock:
            if key in self._said:
                return False
            self._said.add(key)
        self._logger.log(level, message, *args)
        return True

    def warning(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def error(self, key: Hashable, message: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, message, *args)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._said.discard(key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._said


class FirstFailure(logging.Handler):
    """Keeps the first line an SDK logs at ``level`` or above (among the records ``accept`` takes) since the last
    :meth:`take`. The OTLP exporters and ClearML's reporting log a failed send and go on; with this a backend
    raises with their reason instead, and the sender reports the outage once."""

    def __init__(self, level: int, accept: Callable[[logging.LogRecord], bool] = lambda record: True) -> None:
        super().__init__(level)
        self._accept = accept
        self._first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._first is None and self._accept(record):
            self._first = record.getMessage().splitlines()[0][:500]

    def take(self) -> str | None:
        first, self._first = self._first, None
        return first
