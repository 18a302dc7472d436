"""The agent's OpenTelemetry providers.

Spans go to the backends' exporters only. Records reach a collector through the ``otlp`` backend, which spools
and retries like every backend; ``OTEL_TRACES_EXPORTER=otlp`` adds that backend to the run (``_session``), so
that there is one way over OTLP, not a second, lossy one that would send every record twice. Metrics are
exported only when the standard variables ask for it (``OTEL_METRICS_EXPORTER=otlp`` or ``console``): an OTLP
exporter with no collector listening retries for ~13 s per flush.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tracelet_otel.telemetry import semconv

__all__ = ["make_meter_provider", "make_resource"]


def make_resource(project: str | None, exp_name: str, run_id: str) -> Resource:
    # Resource.create adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME over these.
    return Resource.create({
        "service.name": "tracelet-otel",
        semconv.RESOURCE_PROJECT: project or "",
        semconv.RESOURCE_EXPERIMENT: exp_name,
        semconv.RESOURCE_RUN_ID: run_id,
    })


def _requested(variable: str) -> set[str]:
    return {name.strip() for name in os.environ.get(variable, "").split(",") if name.strip()}


def _otlp_protocol() -> str:
    return os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")


def make_meter_provider(resource: Resource) -> MeterProvider:
    readers = []
    requested = _requested("OTEL_METRICS_EXPORTER")
    if "otlp" in requested:
        if _otlp_protocol().startswith("http"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter  # type: ignore[assignment]
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    if "console" in requested:
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
    return MeterProvider(resource=resource, metric_readers=readers)
