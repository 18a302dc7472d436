"""Capture of TensorBoard ``SummaryWriter`` calls: the patches, and the :class:`Capture` they feed.

Mechanism only: :func:`install` patches ``SummaryWriter`` of torch and tensorboardX at class level (writers
created before are captured too) and sends what they write to an :class:`EventSink`; :func:`uninstall` restores
the original methods exactly. Which sink, and when, is decided above: ``start_logging`` installs its run's
:class:`Capture`, and the zero-code route (:mod:`tracelet_otel.instrumentor`) a stand-in that starts a run at the
first event.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from tracelet_otel.capture import _wrappers
from tracelet_otel.capture._capture import Capture, EventSink

__all__ = ["Capture", "EventSink", "install", "uninstall"]

_WRITER_MODULES = ("torch.utils.tensorboard.writer", "tensorboardX.writer")
_SUMMARY_WRITER_METHODS = ("add_scalars", "add_hparams", "add_embedding")


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


def install(sink: EventSink) -> list[str]:
    """Send every event of every ``SummaryWriter`` to ``sink`` from now on, in place of any sink before.

    Returns the packages whose writers are patched (``torch.utils.tensorboard``, ``tensorboardX``).
    """
    uninstall()
    patched = []
    for module in _installed_writer_modules():
        _wrappers.patch(module.FileWriter, "add_event", _wrappers.add_event(sink))
        _wrappers.patch(module.SummaryWriter, "add_scalars", _wrappers.add_scalars)
        _wrappers.patch(module.SummaryWriter, "add_hparams", _wrappers.add_hparams)
        _wrappers.patch(module.SummaryWriter, "add_embedding", _wrappers.add_embedding(sink))
        patched.append(module.__name__.removesuffix(".writer"))
    return patched


def uninstall() -> None:
    """Restore TensorBoard's own methods (nothing happens where none is patched)."""
    for module in _installed_writer_modules():
        _wrappers.unpatch(module.FileWriter, "add_event")
        for method in _SUMMARY_WRITER_METHODS:
            _wrappers.unpatch(module.SummaryWriter, method)
