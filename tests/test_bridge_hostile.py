"""Hostile input sent straight to the bridge: refused, never fetched, never stored, and the bridge goes on
delivering the good jobs."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from google.rpc import status_pb2

from tests.bridge_support import Bridge, mlflow_run, wait_for_status
from tests.support import MlflowStore
from tracelet_otel.backends import RunInfo
from tracelet_otel.otlp import OtlpBackend
from tracelet_otel.records import Blob, Record, RecordKind

TOKEN = "a-token-only-the-collector-knows"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> MlflowStore:
    return MlflowStore(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, store):
    directory = str(tmp_path_factory.mktemp("guarded-bridge"))
    with open(os.path.join(directory, "token"), "w") as file:
        file.write(TOKEN + "\n")
    bridge = Bridge(directory, store.uri, "--token-file", os.path.join(directory, "token"),
                    "--max-request-size", "1MiB", "--artifact-store", os.path.join(directory, "trusted"))
    try:
        yield bridge.start()
    finally:
        bridge.kill()


@pytest.fixture
def canary():
    """A web server that notes every request: a payload URI pointing here must never be fetched."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], requests
    server.shutdown()


def otlp_run(bridge: Bridge, run_id: str, token: str = TOKEN):
    return OtlpBackend().open_run(RunInfo(run_id, "hostile", "collector-route"),
                                  {"otlp_endpoint": bridge.grpc, "otlp_headers": f"authorization=Bearer {token}"})


def payload(uri: str, sha256: str, kind: RecordKind = RecordKind.IMAGE, **fields) -> Record:
    return Record(kind, "sample", 0, 1_700_000_000.0, blob=Blob(uri, sha256, "image/png", 4), **fields)


def test_payloads_outside_the_trusted_stores_are_refused_never_fetched_never_stored(bridge, store, canary):
    port, fetched = canary
    sha = hashlib.sha256(b"png!").hexdigest()
    trusted = "file://" + os.path.join(bridge.directory, "trusted")
    hostile = [
        payload("file:///etc/passwd", sha),
        payload(f"{trusted}/../../../../etc/passwd", sha),
        payload(f"{trusted}/{sha[:2]}/{sha}.png/../../../../../etc/passwd", sha),
        payload(f"http://127.0.0.1:{port}/{sha[:2]}/{sha}.png", sha),
        payload(f"s3://another-bucket/{sha[:2]}/{sha}.png", sha),
        payload(f"{trusted}/{sha[:2]}/{sha}.png", "../" * 20),
        payload(f"{trusted}/{sha[:2]}/{sha}.png", sha, RecordKind.EMBEDDING, filename="../../../tmp/evil"),
        payload(f"{trusted}/{sha[:2]}/{sha}.png", sha, RecordKind.HPARAMS, writer="../../.."),
    ]
    run_id = uuid.uuid4().hex
    otlp_run(bridge, run_id).deliver(hostile, through_seq=len(hostile))

    assert bridge.health()["refused"] == {"untrusted payload": 6, "unsafe file name": 1, "unsafe writer": 1}
    assert fetched == []
    assert mlflow_run(store, run_id) is None
    assert not os.path.exists(os.path.join(bridge.directory, "spool", "runs", run_id))
    log = bridge.read_log()
    assert "payload file:///etc/passwd is not in a trusted artifact store" in log
    assert "file name '../../../tmp/evil' is not a plain file name" in log


def http_post(bridge: Bridge, body: bytes, token: str | None = TOKEN, **headers: str) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-protobuf", **headers}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{bridge.http}/v1/traces", body, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, status_pb2.Status.FromString(error.read()).message


def grpc_call(bridge: Bridge, body: bytes, token: str = TOKEN) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(f"127.0.0.1:{bridge.grpc_port}",
                               options=[("grpc.max_send_message_length", 64 * 2**20)]) as channel:
        try:
            channel.unary_unary(TRACES)(body, metadata=[("authorization", f"Bearer {token}")], timeout=30)
        except grpc.RpcError as error:
            return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def test_garbage_oversized_requests_and_wrong_tokens_are_refused_and_the_bridge_keeps_delivering(bridge, store):
    garbage = b"\xff" * 64
    oversized = b"\x0a" * (2 * 2**20)
    bomb = gzip.compress(b"\0" * (64 * 2**20))  # 64 KiB on the wire, 64 MiB inflated

    status, message = http_post(bridge, garbage)
    assert status == 400 and "not an OTLP ExportTraceServiceRequest" in message
    assert http_post(bridge, oversized)[0] == 413
    assert http_post(bridge, bomb, **{"Content-Encoding": "gzip"})[0] == 413
    assert http_post(bridge, b"", token="a-guess")[0] == 401
    assert http_post(bridge, b"", token=None)[0] == 401
    assert http_post(bridge, b"{}", **{"Content-Type": "application/json"})[0] == 415

    code, details = grpc_call(bridge, garbage)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not an OTLP ExportTraceServiceRequest" in details
    assert grpc_call(bridge, oversized)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert grpc_call(bridge, b"", token="a-guess")[0] == grpc.StatusCode.UNAUTHENTICATED

    refused_run = uuid.uuid4().hex
    with pytest.raises(RuntimeError, match="did not accept"):
        otlp_run(bridge, refused_run, token="a-guess").deliver([payload("file:///x", "0" * 64)], through_seq=1)

    good_run = uuid.uuid4().hex
    job = otlp_run(bridge, good_run)
    job.deliver([Record(RecordKind.SCALAR, "loss", step, 1_700_000_000.0 + step, value=1.0) for step in range(100)],
                through_seq=100)
    job.finish("FINISHED")
    run = wait_for_status(store, good_run, "FINISHED")
    assert len(store.client.get_metric_history(run.info.run_id, "loss")) == 100
    assert mlflow_run(store, refused_run) is None
    assert bridge.health()["rejected_requests"] == {"malformed": 2, "too large": 2, "unauthenticated": 4,
                                                    "unsupported content type": 1}
