"""Options of ``start_logging(config=...)``, their defaults, and their ``TRACELET_*`` variables.

| option | default | meaning |
|---|---|---|
| ``track_tensorboard`` | ``True`` | capture ``SummaryWriter`` calls at all |
| ``tensorboard_log_dir`` | first writer's logdir | root that keeps tags verbatim; other writers are namespaced |
| ``capture_images`` | ``True`` | images, figures, image-with-boxes and videos |
| ``capture_histograms`` | ``True`` | histograms |
| ``capture_audio`` | ``True`` | audio |
| ``capture_console`` | on with W&B or ClearML | stdout and stderr, at the file-descriptor level, as console lines |
| ``max_image_size`` | ``None`` | e.g. ``"1MB"``: larger images are downscaled to fit, or skipped with a warning |
| ``stop_timeout`` | ``60`` | seconds ``stop_logging`` waits for delivery |
| ``spool_dir`` | ``./.tracelet`` | where capture journals, spools and the default payload stores live |
| ``max_spool_size`` | ``"10GB"`` | bytes waiting per journal, spool and run's payloads; past it values drop, counted |
| ``artifact_store`` | in the run's directory | a directory or fsspec URL for payloads; nothing in it is removed |
| ``run_id`` | a new one per run | an id of your own (the scheduler's job id): a restarted job continues its run |

Backends add their own options (``mlflow_tracking_uri`` for MLflow), each with a declared type, and their
``TRACELET_*`` variables are parsed by that type like the options above (``false`` is never true). An unknown
option raises ``ConfigurationError`` (a ``ValueError``) naming the nearest valid one.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from tracelet_otel.environment_variables import OPTION_PREFIX
from tracelet_otel.errors import ConfigurationError

__all__ = ["Options", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]?i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(size: str | int | None) -> int | None:
    """``"1MB"`` -> 1_000_000, ``"1MiB"`` -> 1_048_576, ``2048`` -> 2048, ``None`` -> no limit."""
    if size is None or isinstance(size, int):
        return size
    match = _SIZE.match(str(size))
    unit = (match.group(2) or "").upper() if match else ""
    if not match or (unit.rstrip("B") + "B" not in _UNITS and unit not in _UNITS):
        raise ConfigurationError(f"{size!r} is not a size; write it like '1MB', '512KiB' or 1048576")
    unit = unit if unit in _UNITS else unit + "B"
    return int(float(match.group(1)) * _UNITS[unit])


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{text!r} is not a boolean; use true or false")


def _bool(value: Any) -> bool:
    return _parse_bool(value) if isinstance(value, str) else bool(value)


def _as_is(value: Any) -> Any:
    return value


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _run_id(value: Any) -> str:
    """A run id names the run's folder and the trackers' runs: letters, digits and ``._-``, as W&B, ClearML and
    file systems all take them."""
    text = str(value)
    if not _RUN_ID.fullmatch(text):
        raise ConfigurationError(f"run_id {text!r}: use 1 to 128 letters, digits, '.', '_' or '-', starting with a "
                                 "letter or digit (a scheduler's job id such as $SLURM_JOB_ID fits)")
    return text


# How a backend's declared option type reads a value given as text or as a Python value.
_TYPE_PARSERS = {bool: _bool, int: int, float: float, str: str}


# Options given as text (TRACELET_* variables) or as Python values; the rest are taken as given.
_PARSERS = {
    "track_tensorboard": _bool,
    "capture_images": _bool,
    "capture_histograms": _bool,
    "capture_audio": _bool,
    "capture_console": _bool,
    "max_image_size": parse_size,
    "max_spool_size": parse_size,
    "stop_timeout": float,
    "run_id": _run_id,
}


@dataclass(frozen=True)
class Options:
    track_tensorboard: bool = True
    tensorboard_log_dir: str | None = None
    capture_images: bool = True
    capture_histograms: bool = True
    capture_audio: bool = True
    capture_console: bool | None = None  # None: on where a backend's own integration captures it by default
    max_image_size: int | None = None
    stop_timeout: float = 60.0
    spool_dir: str = ".tracelet"
    max_spool_size: int | None = 10 * 10**9
    artifact_store: str | None = None
    run_id: str | None = None
    backend_options: Mapping[str, Any] | None = None

    @classmethod
    def resolve(
        cls,
        config: Mapping[str, Any] | None,
        backend_option_types: Mapping[str, type],
        environ: Mapping[str, str] = os.environ,
    ) -> Options:
        """Merge ``config`` over ``TRACELET_*`` variables over defaults, check every name and parse every value.

        Raises:
            ConfigurationError: an unknown option, or a value its type cannot read.
        """
        own = {f.name: f for f in fields(cls) if f.name != "backend_options"}
        valid = set(own) | set(backend_option_types)
        merged: dict[str, Any] = {}
        for name in valid:
            text = environ.get(OPTION_PREFIX + name.upper())
            if text is not None:
                merged[name] = text
        for name, value in (config or {}).items():
            if name not in valid:
                nearest = difflib.get_close_matches(name, sorted(valid), n=1)
                hint = f"; did you mean {nearest[0]!r}?" if nearest else f"; valid options: {', '.join(sorted(valid))}"
                raise ConfigurationError(f"unknown tracelet_otel option {name!r}{hint}")
            merged[name] = value
        values = {name: _parsed(name, _PARSERS.get(name, _as_is), value) for name, value in merged.items()
                  if name in own}
        backend_options = {name: None if value is None else _parsed(name, _TYPE_PARSERS[backend_option_types[name]],
                                                                     value)
                           for name, value in merged.items() if name in backend_option_types}
        return cls(**values, backend_options=backend_options)


def _parsed(name: str, parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ConfigurationError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"tracelet_otel option {name!r}: {value!r} cannot be read ({error})") from None
