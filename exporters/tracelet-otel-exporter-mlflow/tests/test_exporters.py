"""The MLflow exporters as OpenTelemetry components, against a real local MLflow store."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tracelet_otel.backends import RunInfo
from tracelet_otel.records import Record, RecordKind
from tracelet_otel.telemetry import events
from tracelet_otel_mlflow import MlflowMetricExporter, MlflowSpanExporter


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_the_span_exporter_delivers_tracelet_span_events_to_a_new_run(tracking_uri, tmp_path):
    exporter = MlflowSpanExporter(str(tmp_path / "spool.sqlite"), run=RunInfo("ours", "by-hand", "pipeline"),
                                  tracking_uri=tracking_uri)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("work") as span:
        for step in range(5):
            span.add_event(*events.encode(Record(RecordKind.SCALAR, "loss", step, 1700000000.0 + step,
                                                 value=step / 10))[:2])
        span.add_event("unrelated", {"other": 1})
    provider.shutdown()

    client = MlflowClient(tracking_uri)
    history = client.get_metric_history(exporter.run_id, "loss")
    assert [(m.step, m.value, m.timestamp) for m in history] == [
        (step, step / 10, (1700000000 + step) * 1000) for step in range(5)]
    assert client.get_run(exporter.run_id).info.status == "FINISHED"


def test_the_metric_exporter_logs_user_metrics_to_a_run(tracking_uri):
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("metrics")).info.run_id
    reader = PeriodicExportingMetricReader(MlflowMetricExporter(run_id, tracking_uri), export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("train")
    meter.create_counter("samples").add(64, {"split": "train"})
    meter.create_histogram("batch_seconds").record(0.5)
    provider.shutdown()

    assert client.get_run(run_id).data.metrics == {"samples/split:train": 64.0, "batch_seconds.count": 1.0,
                                                   "batch_seconds.sum": 0.5}
