"""What a backend is, and how backends are found (backend authors import these from ``tracelet_otel.backends``).

A backend is a class registered in the ``tracelet_otel_backends`` entry-point group; a third party adds one
without touching tracelet-otel::

    [project.entry-points.tracelet_otel_backends]
    mytracker = "mypackage:MyTrackerBackend"

It opens a :class:`BackendRun`, whose ``deliver`` turns a batch of records into the tracker's calls (through a
pure translation function) and raises on failure: ``RecordRejected`` when the tracker refuses a record (it is
dropped), anything else when it is unavailable (the batch is retried). Spooling, batching and retry are shared
and not its concern. ``tracelet_otel.testing.BackendContract`` checks a backend against this contract.

The delivery contract (``docs/durability.md``): the sender calls ``deliver`` and then ``flush``, and only when
both returned does it mark the batch delivered. A crash in between sends the batch again on replay. A backend
that stores a resent batch once (MLflow) needs nothing more. A backend whose resends would duplicate data
(``resend_duplicates = True``) stores the ``through_seq`` it is given with the data, in order, and reports the
highest one that reached its storage from ``stored_through()`` when the run is reopened; the sender never sends
those records again.
"""

from __future__ import annotations

import abc
import difflib
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, ClassVar

from tracelet_otel.errors import ConfigurationError
from tracelet_otel.records import Record

__all__ = ["Backend", "BackendRun", "BackendRunHandle", "RunInfo", "available_backends", "load_backend"]

ENTRY_POINT_GROUP = "tracelet_otel_backends"


@dataclass(frozen=True)
class RunInfo:
    run_id: str  # ours; the same for every backend of a run
    exp_name: str
    project: str | None
    rank: int | None = None  # the process's rank when several processes of one job log
    # The training process, as the tracker would have recorded it had the run been opened there
    # (see tracelet_otel.provenance): program, args, user, host, pid, cwd, git_commit, git_branch, git_remote.
    source: Mapping[str, Any] | None = None
    # The user chose ``run_id`` (option ``run_id``): a restarted job continues its run, so ``open_run`` continues
    # the tracker's run of that id where the tracker holds one (``find_run`` is asked first).
    resumable: bool = False


class BackendRun(abc.ABC):
    backend: ClassVar[str]
    max_batch: ClassVar[int] = 1000
    resend_duplicates: ClassVar[bool] = False
    """Whether the backend would store a batch sent twice twice (see the module docstring)."""

    @property
    @abc.abstractmethod
    def run_id(self) -> str:
        """The backend's own id of the run (MLflow's run id, W&B's run id, ClearML's task id, ...)."""

    @property
    @abc.abstractmethod
    def reference(self) -> dict[str, Any]:
        """JSON-able data that lets ``Backend.open_run(resume=...)`` reopen this very run (replay)."""

    @property
    @abc.abstractmethod
    def url(self) -> str | None:
        """Where a person looks at the run, if the backend has such a place."""

    @property
    def location(self) -> str | None:
        """Where the run is stored, for a run without a ``url``: a local store, an offline run's directory."""
        return None

    @abc.abstractmethod
    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        """Send the records; raise on failure (``RecordRejected`` for a record the tracker refuses).

        ``through_seq`` is the spool's sequence number of the last record: a backend with ``resend_duplicates``
        stores it with the data and reports it from ``stored_through`` after a crash. Read the records'
        payloads here: the default store removes a payload once every backend has delivered its records.
        """

    def flush(self) -> None:  # noqa: B027 - optional: a backend whose deliver is synchronous has nothing to do
        """Return once everything ``deliver`` handed over is durable in the backend; raise if it cannot be."""

    def keep_event_files(self, paths: Sequence[str], root: str) -> None:  # noqa: B027 - optional, not abstract
        """Called before ``finish`` of a job's run with its TensorBoard event files (``root``: the logdir that
        keeps tags verbatim), for a tracker that keeps the files themselves (W&B shows them in its TensorBoard
        tab). A path may be gone (the user removed it). Nothing by default."""

    def stored_through(self) -> int:
        """The highest ``through_seq`` the backend has stored, read back from the backend when the run was
        reopened (backends with ``resend_duplicates``; 0 for the others)."""
        return 0

    def is_permanent(self, error: BaseException) -> bool:
        """Whether retrying cannot help, for an error of the tracker's own SDK that means it rejects the data
        (``RecordRejected`` always is)."""
        return False

    @abc.abstractmethod
    def finish(self, status: str) -> None:
        """End the run with one of ``RunStatus.ENDINGS``: ``FINISHED``, ``FAILED`` or ``KILLED``."""

    def close(self) -> None:  # noqa: B027 - optional: only a backend with one_run_per_process needs it
        """Let go of the run without ending it, so that the process can open another run; the run is reopened
        (``Backend.open_run(resume=...)``) to deliver more. Nothing by default."""

    @abc.abstractmethod
    def discard(self) -> None:
        """Undo an empty run that ``start_logging`` opened and then gave up on (another backend could not open
        its run): afterwards the tracker shows no such run, where it can delete one (else end it ``FAILED``)."""


class Backend(abc.ABC):
    name: ClassVar[str]
    options: ClassVar[Mapping[str, type]] = {}
    """Option names and their types (``str``, ``bool``, ``int``, ``float``); ``TRACELET_<NAME>`` variables are
    parsed by type, so ``open_run`` gets typed values."""
    captures_console: ClassVar[bool] = False
    """Whether the tracker's own integration records the console by default (W&B's, ClearML's): then so does a
    run with this backend, unless ``capture_console`` says otherwise."""
    one_run_per_process: ClassVar[bool] = False
    """Whether the tracker's SDK holds one run at a time in a process (ClearML's one task): the bridge then
    delivers such runs from several processes, which take turns when more runs wait (``BackendRun.close``)."""

    @abc.abstractmethod
    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> BackendRun:
        """Create the tracker run, or reopen the one ``resume`` (a ``BackendRun.reference``) names."""

    def find_run(self, run: RunInfo, options: Mapping[str, Any]) -> BackendRun | None:
        """The tracker run created for ``run`` (by its ``run_id``), reopened, if the tracker can be asked.

        Asked before a run is created for a ``resumable`` run (a restarted job continues its run), and after a
        crash that may have come between the tracker creating the run and the spool recording it, so that the run
        is not created twice. None by default: such a backend creates a new run there.
        """
        return None


@dataclass(frozen=True)
class BackendRunHandle:
    """A backend's run, as ``run.backends[name]`` shows it: the backend's own run id, the reference that reopens
    the run, and where a person looks at it (``url``) or, without one, where it is stored (``location``)."""

    name: str
    run_id: str
    reference: Mapping[str, Any]
    url: str | None
    location: str | None = None

    @classmethod
    def of(cls, name: str, run: BackendRun) -> BackendRunHandle:
        return cls(name, str(run.run_id), run.reference, run.url, run.location)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "run_id": self.run_id, "reference": dict(self.reference), "url": self.url,
                "location": self.location}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> BackendRunHandle:
        return cls(body["name"], body["run_id"], body["reference"], body["url"], body.get("location"))


def available_backends() -> dict[str, Any]:
    return {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}


def load_backend(name: str) -> Backend:
    """Raises:
    ConfigurationError: no backend of that name is installed (the message names the nearest one).
    """
    return _backend_class(name)()


@functools.cache
def _backend_class(name: str) -> type[Backend]:
    # Once per process: listing entry points reads the metadata of every installed package, and a bridge's
    # delivery process opens a run for each of its hundreds of spools (it was a fifth of its CPU at 100 runs).
    # A name not found is looked for again next time (an exception is not cached).
    found = available_backends()
    if name not in found:
        nearest = difflib.get_close_matches(name, sorted(found), n=1)
        hint = f"did you mean {nearest[0]!r}?" if nearest else f"installed: {', '.join(sorted(found)) or 'none'}"
        raise ConfigurationError(f"unknown tracelet_otel backend {name!r}; {hint}")
    backend_class: type[Backend] = found[name].load()
    return backend_class
