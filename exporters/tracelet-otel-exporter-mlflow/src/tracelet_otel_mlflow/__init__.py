"""MLflow exporters for tracelet-otel.

* :class:`MlflowBackend` is what ``start_logging(backend="mlflow")`` uses (entry point ``mlflow`` in the
  ``tracelet_otel_backends`` group).
* :class:`MlflowSpanExporter` is a plain OpenTelemetry ``SpanExporter`` for pipelines you build yourself (the
  same delivery the agent uses): it reads tracelet-otel span events, spools them and delivers them to one run.
* :class:`MlflowMetricExporter` sends any other OpenTelemetry metrics your code records to the same run.

How records map to MLflow: scalars -> metrics through ``log_batch`` (step = TensorBoard step, timestamp =
TensorBoard wall time in ms); hparams -> params; payloads -> artifacts under ``images/``, ``histograms/``,
``text/``, ``audio/``, ``graphs/``... (see ``_translate``); images and pictures of histograms also go to MLflow's
image view, a chart per key with a step slider (:mod:`tracelet_otel_mlflow.testing` reads it back for tests).
"""

from tracelet_otel_mlflow._exporters import MlflowMetricExporter, MlflowSpanExporter
from tracelet_otel_mlflow._run import MlflowBackend, MlflowRun
from tracelet_otel_mlflow._translate import mlflow_image_key, mlflow_name, translate
from tracelet_otel_mlflow.version import __version__

__all__ = ["MlflowBackend", "MlflowMetricExporter", "MlflowRun", "MlflowSpanExporter", "__version__",
           "mlflow_image_key", "mlflow_name", "translate"]
