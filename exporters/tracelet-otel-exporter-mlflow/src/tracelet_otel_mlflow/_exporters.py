"""OpenTelemetry exporters bound to one MLflow run, for OpenTelemetry pipelines built by hand."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from tracelet_otel.backends import RunInfo
from tracelet_otel.delivery import Delivery, TrackerSpanExporter
from tracelet_otel.errors import ConfigurationError
from tracelet_otel_mlflow._run import MlflowBackend
from tracelet_otel_mlflow._translate import translate_metrics

__all__ = ["MlflowMetricExporter", "MlflowSpanExporter"]

_logger = logging.getLogger("tracelet_otel.mlflow")


class MlflowSpanExporter(TrackerSpanExporter):
    """Delivers the tracelet-otel span events it receives to an MLflow run, through a durable spool.

    Args:
        spool_path: the sqlite file that holds records until MLflow has them.
        run_id: an existing MLflow run to deliver to; without it a run is created from ``run``.
        run: the experiment (``project``) and run name of the run to create.
        tracking_uri: MLflow's tracking URI; MLflow's own default when None.

    Raises:
        ConfigurationError: neither ``run_id`` nor ``run``.
        RunNotStarted: the run could not be opened.
    """

    def __init__(self, spool_path: str, *, run_id: str | None = None, run: RunInfo | None = None,
                 tracking_uri: str | None = None) -> None:
        if run_id is None and run is None:
            raise ConfigurationError("MlflowSpanExporter needs run_id= (an existing run) or run= (one to create)")
        existing = {"run_id": run_id, "tracking_uri": tracking_uri} if run_id else None
        info = dataclasses.asdict(run or RunInfo("", "", None))
        options = {"mlflow_tracking_uri": tracking_uri}
        super().__init__(spool_path, Delivery(MlflowBackend.name, existing, options, info))
        self.run_id = self.wait_ready().run_id


class MlflowMetricExporter(MetricExporter):
    """Sends OpenTelemetry metrics (gauges, sums, histograms) to an MLflow run as metrics."""

    def __init__(self, run_id: str, tracking_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(preferred_temporality=kwargs.pop("preferred_temporality", None),
                         preferred_aggregation=kwargs.pop("preferred_aggregation", None))
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._run_id = run_id
        self._exports = 0
        self._shutdown = False

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        if self._shutdown:
            return MetricExportResult.FAILURE
        from mlflow.entities import Metric

        points = translate_metrics(metrics_data, self._exports)
        self._exports += 1
        try:
            for start in range(0, len(points), 1000):
                self._client.log_batch(self._run_id, metrics=[
                    Metric(p.key, p.value, p.timestamp_ms, p.step) for p in points[start : start + 1000]])
        except Exception:
            _logger.exception("tracelet-otel: could not export metrics to MLflow")
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Nothing is buffered: every export is sent at once."""
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._shutdown:
            _logger.warning("tracelet-otel: MlflowMetricExporter already shut down")
        self._shutdown = True
