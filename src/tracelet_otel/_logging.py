"""Warnings said once, however often their cause repeats: one per tag, per reason, per outage."""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable

__all__ = ["OnceLogger"]


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
