"""The ``otlp`` backend: a training job sends its records over OTLP and nothing else.

``start_logging(backend="otlp")`` (or ``TRACELET_BACKEND=otlp``, or beside others: ``["mlflow", "otlp"]``)
sends every record as a span event to an OpenTelemetry collector, which routes it to ``tracelet-otel serve``
(the bridge), which delivers to the trackers: no tracker credentials in the job. The records are spooled and
retried like any backend's, so a collector that is down or refuses loses nothing (``docs/collector.md``).
"""

from tracelet_otel.otlp._backend import OtlpBackend, OtlpRun
from tracelet_otel.otlp._exporter import OtlpSettings

__all__ = ["OtlpBackend", "OtlpRun", "OtlpSettings"]
