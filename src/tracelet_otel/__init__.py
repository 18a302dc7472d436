"""tracelet-otel: every TensorBoard ``SummaryWriter`` call, delivered to experiment trackers (MLflow, W&B, ClearML)
through OpenTelemetry.

    import tracelet_otel
    run = tracelet_otel.start_logging(exp_name="baseline", project="my_project", backend="mlflow")
    ...  # unchanged TensorBoard code
    tracelet_otel.stop_logging()
"""

from tracelet_otel._backend import BackendRunHandle
from tracelet_otel._session import Run, start_logging, stop_logging
from tracelet_otel.errors import ConfigurationError, RunNotStarted, TraceletError
from tracelet_otel.instrumentor import TensorBoardInstrumentor
from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel.reports import CaptureReport, DeliveryReport, DropReason, RunStatus
from tracelet_otel.version import __version__

__all__ = [
    "BackendRunHandle",
    "Blob",
    "CaptureReport",
    "ConfigurationError",
    "DeliveryReport",
    "DropReason",
    "Record",
    "RecordKind",
    "Run",
    "RunNotStarted",
    "RunStatus",
    "TensorBoardInstrumentor",
    "TraceletError",
    "__version__",
    "start_logging",
    "stop_logging",
]
