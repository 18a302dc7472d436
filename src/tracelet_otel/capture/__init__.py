"""Capture of TensorBoard ``SummaryWriter`` calls, as an OpenTelemetry instrumentor.

``start_logging`` uses it for you. For zero-code use, set ``TRACELET_*`` variables and run
``opentelemetry-instrument python train.py``: the ``tensorboard`` entry point of the
``opentelemetry_instrumentor`` group loads :class:`TensorBoardInstrumentor`, which then starts a run from the
environment and stops it at exit.

Both ``torch.utils.tensorboard.SummaryWriter`` and ``tensorboardX.SummaryWriter`` are patched at class level,
so writers created before instrumentation are captured too.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

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
        capture = kwargs.get("capture")
        if capture is None:
            from tracelet_otel._session import start_from_environment

            start_from_environment()  # it calls instrument(capture=...) itself, once uninstrumented
            return
        for module in _installed_writer_modules():
            _wrappers.patch(module.FileWriter, "add_event", _wrappers.add_event(capture))
            _wrappers.patch(module.SummaryWriter, "add_scalars", _wrappers.add_scalars)
            _wrappers.patch(module.SummaryWriter, "add_hparams", _wrappers.add_hparams)
            _wrappers.patch(module.SummaryWriter, "add_embedding", _wrappers.add_embedding(capture))

    def _uninstrument(self, **kwargs: Any) -> None:
        for module in _installed_writer_modules():
            _wrappers.unpatch(module.FileWriter, "add_event")
            for method in ("add_scalars", "add_hparams", "add_embedding"):
                _wrappers.unpatch(module.SummaryWriter, method)
