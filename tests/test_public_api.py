"""The public surface is what ``__all__`` says, and the capture is registered for zero-code use."""

from __future__ import annotations

from importlib.metadata import entry_points

import tracelet_otel


def test_exported_members():
    assert tracelet_otel.__all__ == sorted(tracelet_otel.__all__)
    assert {name for name in dir(tracelet_otel) if not name.startswith("_")} >= set(tracelet_otel.__all__) - {
        "__version__"}


def test_entry_points_register_the_instrumentor_and_the_mlflow_backend():
    instrumentors = {e.name: e.value for e in entry_points(group="opentelemetry_instrumentor")}
    backends = {e.name: e.value for e in entry_points(group="tracelet_otel_backends")}
    assert instrumentors["tensorboard"] == "tracelet_otel.instrumentor:TensorBoardInstrumentor"
    assert backends["mlflow"] == "tracelet_otel_mlflow:MlflowBackend"
