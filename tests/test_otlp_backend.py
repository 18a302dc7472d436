"""The otlp backend in the training job: where it sends, what it does when nothing listens, and how it is asked for."""

from __future__ import annotations

import logging
import time
import uuid

import pytest

import tracelet_otel
from tests.conftest import free_port
from tracelet_otel.backends import RunInfo
from tracelet_otel.otlp import CollectorUnavailable, OtlpBackend, OtlpSettings
from tracelet_otel.otlp._exporter import DEFAULT_TIMEOUT_S
from tracelet_otel.records import Record, RecordKind


def test_options_win_over_the_standard_variables():
    environ = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "30"}
    settings = OtlpSettings.resolve({"otlp_protocol": "http/protobuf", "otlp_endpoint": "https://collector:4318",
                                     "otlp_headers": "authorization=Bearer abc,x-team=ml", "otlp_timeout": 2.0},
                                    environ)
    assert settings == OtlpSettings(protocol="http/protobuf", endpoint="https://collector:4318",
                                    headers={"authorization": "Bearer abc", "x-team": "ml"}, insecure=None,
                                    certificate=None, timeout=2.0)


def test_without_options_the_standard_variables_decide_and_the_timeout_is_short():
    assert OtlpSettings.resolve({}, {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}).protocol == "http/protobuf"
    assert OtlpSettings.resolve({}, {}).protocol == "grpc"
    assert OtlpSettings.resolve({}, {}).timeout == DEFAULT_TIMEOUT_S
    assert OtlpSettings.resolve({}, {"OTEL_EXPORTER_OTLP_TIMEOUT": "30"}).timeout is None  # the exporter reads it


def test_an_unknown_protocol_is_an_error_that_names_the_valid_ones():
    with pytest.raises(ValueError, match="grpc, http/protobuf"):
        OtlpSettings.resolve({"otlp_protocol": "http/json"}, {})


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_with_nothing_listening_deliver_raises_soon_so_that_the_sender_retries(protocol):
    run = OtlpBackend().open_run(RunInfo(uuid.uuid4().hex, "down", "tests"),
                                 {"otlp_endpoint": f"http://127.0.0.1:{free_port()}", "otlp_protocol": protocol})
    started = time.monotonic()
    with pytest.raises(CollectorUnavailable, match="did not accept 1 records"):
        run.deliver([Record(RecordKind.SCALAR, "loss", 0, 1.0, value=0.5)], through_seq=1)
    assert time.monotonic() - started < DEFAULT_TIMEOUT_S + 1


def test_otel_traces_exporter_otlp_adds_the_otlp_backend_and_a_local_store_is_warned_about(
        mlflow_store, monkeypatch, caplog):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    with caplog.at_level(logging.WARNING, logger="tracelet_otel"):
        run = tracelet_otel.start_logging("both", "tests", backend="mlflow", config={"stop_timeout": 0})
        tracelet_otel.stop_logging()

    assert sorted(run.backends) == ["mlflow", "otlp"]
    assert [message for message in caplog.messages if "backend otlp sends payloads" in message
            and "s3://bucket/prefix" in message]
