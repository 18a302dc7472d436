"""The otlp backend in the training job: where it sends, what it does when nothing listens, how it is asked for,
and the delivery contract every backend keeps."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

import tracelet_otel
from tests.conftest import free_port
from tracelet_otel.backends import BackendRunHandle, RunInfo
from tracelet_otel.bridge._decode import decode_request
from tracelet_otel.errors import BackendUnavailable
from tracelet_otel.otlp import OtlpBackend, OtlpSettings
from tracelet_otel.otlp._exporter import DEFAULT_TIMEOUT_S
from tracelet_otel.records import Record, RecordKind
from tracelet_otel.testing import BackendContract, StoredRun, expected_payloads, expected_scalars


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
    with pytest.raises(BackendUnavailable, match="did not accept 1 records"):
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


class OtlpReceiver:
    """An OTLP/gRPC trace endpoint on 127.0.0.1 that keeps what a receiver behind a collector keeps: per run, one
    record per sequence number (decoded with the bridge's own ``decode_request``), and the run's end."""

    def __init__(self) -> None:
        self.records: dict[str, dict[int, Record]] = {}
        self.ends: dict[str, str] = {}
        self.trace_ids: dict[str, set[bytes]] = {}
        self.resent_differently = 0
        self._lock = threading.Lock()
        self._server = grpc.server(ThreadPoolExecutor(2))
        handler = grpc.unary_unary_rpc_method_handler(self._export)
        self._server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler})])
        self.endpoint = f"http://127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def _export(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        request = ExportTraceServiceRequest.FromString(payload)
        decoded = decode_request(request)
        with self._lock:
            for resource_spans in request.resource_spans:
                (run_id,) = [pair.value.string_value for pair in resource_spans.resource.attributes
                             if pair.key == "tracelet.run_id"]
                self.trace_ids.setdefault(run_id, set()).update(
                    span.trace_id for scope_spans in resource_spans.scope_spans for span in scope_spans.spans)
            for run_id, batch in decoded.runs.items():
                kept = self.records.setdefault(run_id, {})
                for seq, record in batch.records:
                    self.resent_differently += seq in kept and kept[seq] != record
                    kept.setdefault(seq, record)
                if batch.end is not None:
                    self.ends[run_id] = batch.end.status
        return ExportTraceServiceResponse().SerializeToString()

    def stop(self) -> None:
        self._server.stop(0)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.stop()


def test_every_span_of_a_run_is_in_the_run_s_one_trace_so_that_a_collector_keeps_the_run_on_one_replica(receiver):
    """The collector's loadbalancing exporter routes by trace id by default: a run's spans, from every process
    and attempt of the run (two OtlpRuns here), share one; two runs do not."""
    run_ids = [uuid.uuid4().hex, uuid.uuid4().hex]
    for attempt in range(2):
        for run_id in run_ids:
            run = OtlpBackend().open_run(RunInfo(run_id, "traced", "tests"), {"otlp_endpoint": receiver.endpoint,
                                                                               "otlp_insecure": True})
            for batch in range(3):
                first = attempt * 3000 + batch * 1000
                run.deliver([Record(RecordKind.SCALAR, "loss", step, 1.0, value=0.5)
                             for step in range(first, first + 1000)], first + 1000)
            run.finish("FINISHED")
    first, second = (receiver.trace_ids[run_id] for run_id in run_ids)
    assert len(first) == 1 and len(second) == 1 and first != second


class TestOtlpContract(BackendContract):
    """The otlp backend forwards payload references; the receiver stores a record once per sequence number."""

    backend = "otlp"
    reads_payloads = False

    @pytest.fixture
    def options(self, receiver) -> dict:
        self.receiver = receiver
        return {"otlp_endpoint": receiver.endpoint, "otlp_protocol": "grpc", "otlp_insecure": True}

    def stored(self, run: BackendRunHandle) -> StoredRun:
        assert self.receiver.resent_differently == 0
        records = self.receiver.records.get(run.run_id)
        if records is None:
            return StoredRun(exists=False)
        return StoredRun(exists=True, scalars=expected_scalars(list(records.values())),
                         payloads=expected_payloads(list(records.values())), status=self.receiver.ends.get(run.run_id))
