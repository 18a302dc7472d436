"""Capture of TensorBoard ``SummaryWriter`` calls, as an OpenTelemetry instrumentor.

``start_logging`` uses it for you. For zero-code use, set ``TRACELET_*`` variables and run
``opentelemetry-instrument python train.py``: the ``tensorboard`` entry point of the
``opentelemetry_instrumentor`` group loads :class:`TensorBoardInstrumentor`, which starts a run from the
environment at the script's first ``SummaryWriter`` event (unless the script started one itself by then) and
stops it at exit. tracelet-otel's own helper processes are never instrumented.

Both ``torch.utils.tensorboard.SummaryWriter`` and ``tensorboardX.SummaryWriter`` are patched at class level,
so writers created before instrumentation are captured too.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from tracelet_otel._child import is_helper_process
from tracelet_otel.capture import _wrappers
from tracelet_otel.capture._capture import Capture
from tracelet_otel.capture.package import _instruments_any

__all__ = ["Capture", "TensorBoardInstrumentor"]

_WRITER_MODULES = ("torch.utils.tensorboard.writer", "tensorboardX.writer")


def _installed_writer_modules() -> list[Any]:
    modules = []
    for name in _WRITER_MODULES:
        if importlib.util.find_spec(name.split(".")[0]) is None:
            continue
        try:
            modules.append(importlib.import_module(name))
        except ImportError:  # e.g. torch without the tensorboard package
            continue
    return modules


class TensorBoardInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Patches ``SummaryWriter`` of torch and tensorboardX.

    ``instrument(capture=...)`` sends captured events to that :class:`Capture`; without it (the
    ``opentelemetry-instrument`` route) a run is started from the ``TRACELET_*`` environment.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments_any

    def _instrument(self, **kwargs: Any) -> None:
        if is_helper_process():
            return  # a helper of a run already: whatever its environment says, it starts nothing
        capture = kwargs.get("capture")
        if capture is None:
            capture = _StartOnFirstEvent()
        for module in _installed_writer_modules():
            _wrappers.patch(module.FileWriter, "add_event", _wrappers.add_event(capture))
            _wrappers.patch(module.SummaryWriter, "add_scalars", _wrappers.add_scalars)
            _wrappers.patch(module.SummaryWriter, "add_hparams", _wrappers.add_hparams)
            _wrappers.patch(module.SummaryWriter, "add_embedding", _wrappers.add_embedding(capture))

    def _uninstrument(self, **kwargs: Any) -> None:
        if is_helper_process():
            return
        for module in _installed_writer_modules():
            _wrappers.unpatch(module.FileWriter, "add_event")
            for method in ("add_scalars", "add_hparams", "add_embedding"):
                _wrappers.unpatch(module.SummaryWriter, method)


class _StartOnFirstEvent:
    """Stands in for the capture on the zero-code route until the script's first ``SummaryWriter`` event.

    Starting there rather than at interpreter start-up means a script that calls ``start_logging`` itself gets
    exactly its own run, and a process that never logs (a data-loading worker that ``opentelemetry-instrument``
    instruments too) gets none. A forked child never starts one: its parent's run is the one it belongs to.
    """

    def __init__(self) -> None:
        self._owner_pid = os.getpid()

    def _start(self) -> Capture | None:
        if os.getpid() != self._owner_pid:
            return None
        from tracelet_otel import _session

        _session.start_from_environment()  # replaces these patches with the run's capture, or removes them
        return _session.active_capture()

    def on_event(self, file_writer: Any, event: Any) -> None:
        capture = self._start()
        if capture is not None:
            capture.on_event(file_writer, event)

    def on_embedding(self, logdir: str, tag: str, step: Any, subdir: str) -> None:
        capture = self._start()
        if capture is not None:
            capture.on_embedding(logdir, tag, step, subdir)
