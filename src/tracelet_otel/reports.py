"""What happened to a run: how it ended, what was delivered, and what was dropped and why.

``stop_logging()`` returns the run with ``run.delivery`` (a :class:`DeliveryReport` per backend) and
``run.capture`` (a :class:`CaptureReport`). Both are frozen. Reading them like the dicts of earlier releases
(``run.delivery["mlflow"]["delivered"]``) still works for this release, with a ``DeprecationWarning``.

Every value tracelet-otel leaves out is counted under one of the :class:`DropReason` texts, wherever it was
left out (the training process, the agent, a delivery worker, the bridge), so one reason is one key.
"""

from __future__ import annotations

import dataclasses
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CaptureReport", "DeliveryReport", "DropReason", "RunStatus"]


class RunStatus:
    """How a backend run ends. ``stop_logging`` ends it ``FINISHED``; a run whose training process died is
    ended ``KILLED``; ``DISCARD`` undoes a run ``start_logging`` opened and then gave up on (nothing was
    captured), instead of ending it."""

    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"
    DISCARD = "DISCARD"
    ENDINGS = (FINISHED, FAILED, KILLED)
    """The statuses a run that ran ends with (``BackendRun.finish``)."""


class DropReason:
    """The reasons values are counted as dropped; ``docs/durability.md`` says when each happens."""

    # In the training process.
    CAPTURE_QUEUE_FULL = "capture queue full"
    CAPTURE_ERROR = "capture error"
    JOURNAL_WRITE_FAILED = "journal write failed"
    CAPTURE_THREAD_STUCK = "capture thread stuck at stop"
    LOST_IN_FORKED_CHILD = "logged in a forked child through a torch writer of the parent (TensorBoard loses these too)"
    # Wherever something is held on disk: the journal, a spool, the run's payloads.
    SPOOL_FULL = "spool full (max_spool_size)"
    # In the agent.
    UNREADABLE_EVENT = "unreadable event"
    DAMAGED_JOURNAL = "damaged stretch of the capture journal skipped"
    IMAGE_TOO_LARGE = "above max_image_size and cannot be downscaled"
    # In delivery.
    PAYLOAD_MISSING = "payload missing from its store"
    # At the bridge (records refused before they are spooled).
    INVALID_RUN_ID = "invalid tracelet.run_id"
    WITHOUT_SEQUENCE = "event without tracelet.record.seq"
    UNREADABLE_END = "unreadable end of run"
    UNSAFE_FILE_NAME = "unsafe file name"
    UNSAFE_WRITER = "unsafe writer"
    UNTRUSTED_PAYLOAD = "untrusted payload"

    @staticmethod
    def option_off(option: str) -> str:
        """A value that ``capture_images``, ``capture_histograms`` or ``capture_audio`` turned off."""
        return f"{option} is off"

    @staticmethod
    def unsupported(kind: str) -> str:
        """A summary value of a kind tracelet-otel does not read."""
        return f"unsupported summary value {kind!r}"

    @staticmethod
    def unreadable(kind: str | None) -> str:
        """A summary value of a known kind that could not be read."""
        return f"unreadable {kind}"

    @staticmethod
    def rejected_by(backend: str, detail: str) -> str:
        """A record the backend refused (``RecordRejected``)."""
        return f"rejected by {backend}: {detail}"

    @staticmethod
    def not_spooled(error: BaseException) -> str:
        """Records the spool could not take (a full disk, a broken file)."""
        return f"could not be spooled: {type(error).__name__}"


class _ReadableAsDict:
    """``report["name"]`` as in earlier releases, where reports were dicts."""

    def __getitem__(self, name: str) -> Any:
        warnings.warn(f"reading a tracelet-otel report as a dict is deprecated; use .{name} instead",
                      DeprecationWarning, stacklevel=2)
        if name not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(name)
        return getattr(self, name)


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    return types.MappingProxyType(dict(counts))


@dataclass(frozen=True)
class DeliveryReport(_ReadableAsDict):
    """One backend's delivery, as ``stop_logging`` (or ``tracelet-otel replay``) left it.

    Attributes:
        spooled: records handed to this backend's spool.
        delivered: records the backend accepted.
        retried: records sent again after the backend failed (each retry counts).
        dropped: records left out, by :class:`DropReason` text.
        undelivered: records still in the spool (``tracelet-otel replay`` delivers them).
        finished: the status the backend run was ended with; None while it is not ended.
        spool: the spool's path.
        run: the backend's reference of its run (what reopens it).
    """

    spooled: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    undelivered: int = 0
    finished: str | None = None
    spool: str = ""
    run: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped", _frozen(self.dropped))

    def to_json(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**body, "dropped": dict(self.dropped), "run": None if self.run is None else dict(self.run)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DeliveryReport:
        return cls(**{f.name: body[f.name] for f in dataclasses.fields(cls) if f.name in body})


@dataclass(frozen=True)
class CaptureReport(_ReadableAsDict):
    """What capture and conversion left out, by :class:`DropReason` text (the backends' own drops are in
    each :class:`DeliveryReport`).

    Attributes:
        dropped: values left out, by :class:`DropReason` text.
        uncaptured: event files under the captured writers' logdirs, written during the run, that hold values
            which never came through the capture: a writer tracelet-otel does not patch (TensorFlow, Keras,
            JAX), or a process that did not start a run. ``tracelet-otel sync`` imports them.
    """

    dropped: Mapping[str, int] = field(default_factory=dict)
    uncaptured: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "dropped", _frozen(self.dropped))
