"""wrapt wrappers for the SummaryWriter methods tracelet-otel patches.

One choke point carries the data: ``FileWriter.add_event``, where both torch and tensorboardX hand every event
to the event file, after step and wall time are set. Every ``add_*`` method ends there, so each value is seen
exactly once and exactly as written. Three methods need more than that:

* ``add_scalars`` and ``add_hparams`` write through writers of their own; their wrappers mark the thread so
  that those writers are named after the writer the user called (``group/a``, not ``group_a/group``).
* ``add_embedding`` writes files instead of events; its wrapper reports where.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from tracelet_otel.capture._capture import Capture, call_context

_logger = logging.getLogger("tracelet_otel.capture")

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: Any = None) -> Any:
    if len(args) > position:
        return args[position]
    return kwargs.get(name, default)


def add_event(capture: Capture) -> Wrapper:
    def wrapper(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
        result = wrapped(*args, **kwargs)  # TensorBoard's own errors reach the user untouched
        try:
            capture.on_event(instance, _argument(args, kwargs, 0, "event"))
        except Exception:  # never into the training loop
            _logger.exception("tracelet-otel: capture failed")
        return result

    return wrapper


def _within(call: Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]) -> Wrapper:
    def wrapper(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
        outer = call_context.current
        try:
            call_context.current = call(args, kwargs)
        except Exception:  # bad arguments: let TensorBoard raise its own error
            call_context.current = None
        try:
            return wrapped(*args, **kwargs)
        finally:
            call_context.current = outer

    return wrapper


add_scalars = _within(lambda args, kwargs: (
    "scalars", str(_argument(args, kwargs, 0, "main_tag")), [str(k) for k in _argument(args, kwargs, 1, "tag_scalar_dict")]
))
add_hparams = _within(lambda args, kwargs: ("hparams",))


def add_embedding(capture: Capture) -> Wrapper:
    def wrapper(wrapped, instance, args, kwargs):  # type: ignore[no-untyped-def]
        result = wrapped(*args, **kwargs)
        try:
            step = _argument(args, kwargs, 3, "global_step")
            tag = _argument(args, kwargs, 4, "tag", "default")
            # Where torch and tensorboardX both put the files (SummaryWriter.add_embedding).
            subdir = f"{str(step).zfill(5)}/{instance._encode(tag)}"
            capture.on_embedding(str(instance._get_file_writer().get_logdir()), str(tag), step, subdir)
        except Exception:
            _logger.exception("tracelet-otel: capture of add_embedding failed")
        return result

    return wrapper
