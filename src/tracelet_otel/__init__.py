"""tracelet-otel: every TensorBoard ``SummaryWriter`` call, delivered to experiment trackers (MLflow, W&B, ClearML)
through OpenTelemetry.

    import tracelet_otel
    run = tracelet_otel.start_logging(exp_name="baseline", project="my_project", backend="mlflow")
    ...  # unchanged TensorBoard code
    tracelet_otel.stop_logging()
"""

from tracelet_otel._session import BackendRunHandle, Run, start_logging, stop_logging
from tracelet_otel.capture import TensorBoardInstrumentor
from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel.version import __version__

__all__ = [
    "BackendRunHandle",
    "Blob",
    "Record",
    "RecordKind",
    "Run",
    "TensorBoardInstrumentor",
    "__version__",
    "start_logging",
    "stop_logging",
]
