"""The delivery processes of a parent that delivers many runs at once: the bridge, and ``tracelet-otel sync``."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence

from tracelet_otel._child import Child, Failed, Message, Ready

__all__ = ["DeliveryProcesses"]

_logger = logging.getLogger("tracelet_otel.delivery")

START_TIMEOUT_S = 120.0
MESSAGE_WAIT_S = 60.0


class DeliveryProcesses:
    """One delivery process per backend (``--bridge``: it waits and retries rather than failing, and leaves its
    runs open when it stops), each delivering many spools; one that dies is started again, and ``on_restart``
    tells it what it was doing. ``on_message`` gets what they report (``Opened``, ``Ended``, ``Failed``)."""

    def __init__(self, backends: Sequence[str], on_message: Callable[[str, Message], None],
                 on_restart: Callable[[str], None]) -> None:
        self._on_message = on_message
        self._on_restart = on_restart
        self._stopping = False
        self._lock = threading.Lock()
        self._children = {name: self._start(name) for name in backends}

    def _start(self, backend: str) -> Child:
        child = Child([sys.executable, "-m", "tracelet_otel.delivery", backend, "--bridge"])
        message = child.receive(START_TIMEOUT_S)
        if not isinstance(message, Ready):
            child.wait(0)
            reason = message.error if isinstance(message, Failed) else f"unexpected {message!r}"
            raise RuntimeError(f"the {backend} delivery process could not start: {reason}")
        threading.Thread(target=self._follow, args=(backend, child), name=f"tracelet-otel-delivery-{backend}",
                         daemon=True).start()
        return child

    def _follow(self, backend: str, child: Child) -> None:
        while True:
            message = child.receive(MESSAGE_WAIT_S)
            if not isinstance(message, Failed) or message.spool is not None:
                self._on_message(backend, message)
            elif not child.is_running():
                break
        if self._stopping:
            return
        _logger.error("tracelet-otel: the %s delivery process exited (%s); starting it again", backend,
                      message.error)
        while not self._stopping:
            try:
                replacement = self._start(backend)
            except RuntimeError as error:
                _logger.error("tracelet-otel: %s; trying again", error)
                time.sleep(5)
                continue
            with self._lock:
                self._children[backend] = replacement
            self._on_restart(backend)
            return

    def tell(self, backend: str, message: Message) -> None:
        with self._lock:
            self._children[backend].send(message)

    def close(self, timeout: float) -> None:
        """Let every delivery process finish its batch and exit; runs stay open, spools keep what waits."""
        self._stopping = True
        with self._lock:
            children = list(self._children.values())
        for child in children:
            child.end_input()
        for child in children:
            child.wait(timeout)
