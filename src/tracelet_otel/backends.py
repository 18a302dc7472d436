"""Everything a backend author needs, in one import.

A backend is a class registered in the ``tracelet_otel_backends`` entry-point group; a third party adds one
without touching tracelet-otel::

    [project.entry-points.tracelet_otel_backends]
    mytracker = "mypackage:MyTrackerBackend"

It opens a :class:`BackendRun`, whose ``deliver`` turns a batch of records into the tracker's calls (through a
pure translation function) and raises on failure: :class:`RecordRejected` for a record the tracker refuses (it
is dropped and counted), anything else while the tracker is unavailable (the batch is retried). Spooling,
batching, retry and replay are shared and not its concern.

The delivery contract (``docs/durability.md``): the sender calls ``deliver`` and then ``flush``, and only when
both returned does it mark the batch delivered. A crash in between sends the batch again on replay. A backend
that stores a resent batch once (MLflow) needs nothing more. A backend whose resends would duplicate data
(``resend_duplicates = True``) stores the ``through_seq`` it is given with the data, in order, and reports the
highest one that reached its storage from ``stored_through()`` when the run is reopened; the sender never sends
those records again. ``tracelet_otel.testing.BackendContract`` checks a backend against all of it.

Payloads are read with :func:`read_blob`, :func:`local_file`, :func:`save_blob`, :func:`read_json` and
:func:`read_histogram` (a payload gone from its store raises :class:`PayloadMissing`, which drops the record under
one reason for every backend), filed under :func:`payload_path`, and histograms drawn from
:meth:`Histogram.bars`, the bars TensorBoard's own view draws.
"""

from tracelet_otel._backend import (
    Backend,
    BackendRun,
    BackendRunHandle,
    RunInfo,
    available_backends,
    load_backend,
)
from tracelet_otel._logging import FirstFailure, OnceLogger
from tracelet_otel.errors import BackendUnavailable, PayloadMissing, RecordRejected
from tracelet_otel.payloads import (
    PAYLOAD_FOLDERS,
    Bars,
    Histogram,
    PayloadPath,
    extension,
    local_file,
    payload_path,
    read_blob,
    read_histogram,
    read_json,
    save_blob,
)
from tracelet_otel.records import Blob, ParamValue, Record, RecordKind
from tracelet_otel.reports import RunStatus

__all__ = [
    "PAYLOAD_FOLDERS",
    "Backend",
    "BackendRun",
    "BackendRunHandle",
    "BackendUnavailable",
    "Bars",
    "Blob",
    "FirstFailure",
    "Histogram",
    "OnceLogger",
    "ParamValue",
    "PayloadMissing",
    "PayloadPath",
    "Record",
    "RecordKind",
    "RecordRejected",
    "RunInfo",
    "RunStatus",
    "available_backends",
    "extension",
    "load_backend",
    "local_file",
    "payload_path",
    "read_blob",
    "read_histogram",
    "read_json",
    "save_blob",
]
