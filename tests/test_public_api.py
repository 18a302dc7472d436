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


def test_a_backend_author_imports_everything_from_one_module():
    from tracelet_otel import backends

    assert len(set(backends.__all__)) == len(backends.__all__)  # its order is ruff's (RUF022)
    assert {name for name in dir(backends) if not name.startswith("_")} == set(backends.__all__)


def test_every_exception_derives_from_one_base_and_from_the_builtin_it_replaced():
    from tracelet_otel import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.TraceletError)
    assert issubclass(errors.ConfigurationError, ValueError) and issubclass(errors.RunNotStarted, RuntimeError)
    assert issubclass(errors.PayloadMissing, FileNotFoundError)


def test_reports_are_frozen_and_read_like_the_dicts_of_earlier_releases():
    import dataclasses

    import pytest

    report = tracelet_otel.DeliveryReport(spooled=3, delivered=2, dropped={"capture_audio is off": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.delivered = 5  # type: ignore[misc]
    with pytest.warns(DeprecationWarning, match="use .delivered"):
        assert report["delivered"] == 2
    assert report["dropped"] == {"capture_audio is off": 1}
    assert tracelet_otel.DeliveryReport.from_json(report.to_json()) == report
