"""The bridge: ``tracelet-otel serve``, the OTLP receiver behind a team's OpenTelemetry collector.

Training jobs send their records over OTLP only (``backend="otlp"``); the collector routes tracelet-otel's spans
here; the bridge decodes our span events with the same ``telemetry.events.decode`` the in-process route uses
and delivers them with the same spools, senders and backends: no tracker credentials in the jobs.

    pip install "tracelet-otel[bridge]" tracelet-otel-exporter-mlflow     # no torch, no tensorboardX
    MLFLOW_TRACKING_URI=http://mlflow:5000 tracelet-otel serve --backend mlflow \\
        --grpc-endpoint 0.0.0.0:4317 --http-endpoint 0.0.0.0:4318 --artifact-store s3://bucket/tracelet

``docs/collector.md`` describes the route, its guarantees and its options.
"""

from tracelet_otel.bridge._server import BridgeConfig, parse_endpoint, serve

__all__ = ["BridgeConfig", "parse_endpoint", "serve"]
