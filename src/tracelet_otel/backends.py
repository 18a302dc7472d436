"""What a backend is, and how backends are found.

A backend is a class registered in the ``tracelet_otel_backends`` entry-point group; a third party adds one
without touching tracelet-otel::

    [project.entry-points.tracelet_otel_backends]
    mytracker = "mypackage:MyTrackerBackend"

It opens a :class:`BackendRun`, whose ``deliver`` turns a batch of records into the tracker's calls (through a
pure translation function) and raises on failure. Spooling, batching and retry are shared and not its concern.
"""

from __future__ import annotations

import abc
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from tracelet_otel.records import Record

__all__ = ["Backend", "BackendRun", "RunInfo", "available_backends", "load_backend"]

ENTRY_POINT_GROUP = "tracelet_otel_backends"


@dataclass(frozen=True)
class RunInfo:
    run_id: str  # ours; the same for every backend of a run
    exp_name: str
    project: str | None
    rank: int | None = None  # the process's rank when several processes of one job log


class BackendRun(abc.ABC):
    backend: ClassVar[str]
    max_batch: ClassVar[int] = 1000

    @property
    @abc.abstractmethod
    def reference(self) -> dict[str, Any]:
        """JSON-able data that lets ``Backend.open_run(resume=...)`` reopen this very run (replay)."""

    @property
    @abc.abstractmethod
    def url(self) -> str | None:
        """Where a person looks at the run, if the backend has such a place."""

    @abc.abstractmethod
    def deliver(self, records: Sequence[Record]) -> None:
        """Send the records; raise on failure. Must be idempotent: a batch can be sent again after a crash."""

    def is_permanent(self, error: BaseException) -> bool:
        """Whether retrying cannot help (the backend rejects the data itself)."""
        return False

    @abc.abstractmethod
    def finish(self, status: str) -> None:
        """End the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""


class Backend(abc.ABC):
    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> BackendRun:
        """Create the tracker run, or reopen the one ``resume`` (a ``BackendRun.reference``) names."""


def available_backends() -> dict[str, Any]:
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def load_backend(name: str) -> Backend:
    found = available_backends()
    if name not in found:
        nearest = difflib.get_close_matches(name, sorted(found), n=1)
        hint = f"did you mean {nearest[0]!r}?" if nearest else f"installed: {', '.join(sorted(found)) or 'none'}"
        raise ValueError(f"unknown tracelet_otel backend {name!r}; {hint}")
    backend_class = found[name].load()
    return backend_class()
