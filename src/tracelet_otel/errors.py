"""The exceptions tracelet-otel raises. Every one derives from :class:`TraceletError`; where one replaces a
built-in exception that callers already caught, it derives from that too::

    TraceletError
    ├── ConfigurationError (ValueError)     an unknown backend or option, a value that cannot be read
    ├── RunNotStarted (RuntimeError)        start_logging could not start the run: a backend could not open it
    ├── RunBusy (RuntimeError)              another process is delivering this run right now
    ├── PayloadMissing (FileNotFoundError)  a record's payload is gone from its store: the record is dropped
    ├── PayloadStoreFull (RuntimeError)     the payloads waiting for delivery take max_spool_size already
    ├── RecordRejected (ValueError)         a backend refuses a record; retrying cannot help: it is dropped
    ├── BackendUnavailable (RuntimeError)   a backend did not take a batch; the sender retries with backoff
    └── MalformedRequest (ValueError)       the bridge got a body that is not the OTLP message it takes

Only the first three ever reach a training script, and only from ``start_logging``; ``stop_logging`` and the
patched ``SummaryWriter`` methods never raise. Backends raise :class:`RecordRejected` and
:class:`BackendUnavailable` from ``deliver`` and ``flush`` (``tracelet_otel.backends``).
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "ConfigurationError", "MalformedRequest", "PayloadMissing", "PayloadStoreFull",
           "RecordRejected", "RunBusy", "RunNotStarted", "TraceletError"]


class TraceletError(Exception):
    """The base of every exception tracelet-otel raises."""


class ConfigurationError(TraceletError, ValueError):
    """An unknown backend or option, or an option value that cannot be read; the message says how to fix it."""


class RunNotStarted(TraceletError, RuntimeError):
    """``start_logging`` could not start the run (a backend could not open its run, the agent did not start).
    Nothing was captured and no backend run is left behind."""


class RunBusy(TraceletError, RuntimeError):
    """Another process is delivering this run right now (its agent, or a replay)."""


class PayloadMissing(TraceletError, FileNotFoundError):
    """A record's payload is not in its store (removed by a retention rule or by hand): no retry can bring it
    back, so the record is dropped and counted rather than retried forever."""


class PayloadStoreFull(TraceletError, RuntimeError):
    """The payloads waiting for delivery already take ``max_spool_size``: this one is dropped and counted."""


class RecordRejected(TraceletError, ValueError):
    """The backend refuses this record (an image it cannot read, a malformed histogram): retrying cannot help,
    so the sender drops the record, counts it, and delivers the rest of its batch."""


class BackendUnavailable(TraceletError, RuntimeError):
    """The backend did not take a batch (down, refusing, too slow); the records stay spooled and are retried."""


class MalformedRequest(TraceletError, ValueError):
    """The body of a request to the bridge is not the OTLP message its endpoint takes."""
