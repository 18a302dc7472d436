"""The zero-code route: an OpenTelemetry instrumentor that starts a run from the environment.

Set ``TRACELET_*`` variables and run ``opentelemetry-instrument python train.py``: the ``tensorboard`` entry point
of the ``opentelemetry_instrumentor`` group loads :class:`TensorBoardInstrumentor`, which installs the capture with
a stand-in that starts a run from the environment at the script's first ``SummaryWriter`` event (unless the script
started one itself by then); the run stops at exit. tracelet-otel's own helper processes are never instrumented.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from tracelet_otel import _session, capture
from tracelet_otel._child import is_helper_process
from tracelet_otel.package import _instruments_any

__all__ = ["TensorBoardInstrumentor"]


class TensorBoardInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches ``SummaryWriter`` of torch and tensorboardX; a run starts from the ``TRACELET_*`` environment at
    the first event."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_any

    def _instrument(self, **kwargs: Any) -> None:
        if is_helper_process():
            return  # a helper of a run already: whatever its environment says, it starts nothing
        capture.install(_StartOnFirstEvent())

    def _uninstrument(self, **kwargs: Any) -> None:
        if is_helper_process():
            return
        capture.uninstall()


class _StartOnFirstEvent:
    """Stands in for the capture until the script's first ``SummaryWriter`` event.

    Starting there rather than at interpreter start-up means a script that calls ``start_logging`` itself gets
    exactly its own run, and a process that never logs (a data-loading worker that ``opentelemetry-instrument``
    instruments too) gets none. A forked child never starts one: its parent's run is the one it belongs to.
    """

    def __init__(self) -> None:
        self._owner_pid = os.getpid()

    def _start(self) -> capture.Capture | None:
        if os.getpid() != self._owner_pid:
            return None
        _session.start_from_environment()  # installs the run's capture in place of this one, or uninstalls
        return _session.active_capture()

    def on_event(self, file_writer: Any, event: Any) -> None:
        started = self._start()
        if started is not None:
            started.on_event(file_writer, event)

    def on_embedding(self, logdir: str, tag: str, step: Any, subdir: str) -> None:
        started = self._start()
        if started is not None:
            started.on_embedding(logdir, tag, step, subdir)
