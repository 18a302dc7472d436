"""``tracelet-otel serve``: OTLP over gRPC and HTTP in, the backends' delivery processes out.

Both endpoints hand the request body to the same :class:`Receiver`. A bearer token, when configured, is
required on both (``authorization: Bearer <token>``); TLS is on for both when a certificate is given. Requests
larger than ``max_request_bytes`` (after decompression) are refused; a body that is not OTLP protobuf gets a
clear error (gRPC ``INVALID_ARGUMENT``, HTTP 400 with a ``google.rpc.Status``) and the service keeps running.
``GET /health`` on the HTTP endpoint answers without a token, with the bridge's counters.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import signal
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import code_pb2, status_pb2
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.resources import Resource

from tracelet_otel._backend import load_backend
from tracelet_otel.bridge._receiver import BridgeCounters, Receiver
from tracelet_otel.bridge._runs import Runs
from tracelet_otel.bridge._trust import TrustedStores
from tracelet_otel.config import Options
from tracelet_otel.delivery import postgres
from tracelet_otel.delivery.processes import RUN_PROCESSES
from tracelet_otel.errors import ConfigurationError, MalformedRequest, TraceletError
from tracelet_otel.telemetry import semconv
from tracelet_otel.telemetry.providers import make_meter_provider

__all__ = ["BridgeConfig", "parse_endpoint", "serve"]

_logger = logging.getLogger("tracelet_otel.bridge")

PROTOBUF = "application/x-protobuf"
INGEST_THREADS = 4  # sqlite appends serialize anyway; more threads would only hold more connections
GRACE_S = 10.0
DISCARD_AT_MOST = 8  # times the request size limit, read and dropped so that the client gets its 413
SILENCE_CHECK_S = 1.0
ORPHANS_CHECK_S = 5.0  # with replicas: how often to look for runs no replica delivers (one indexed query)
_TRACE_SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
_METRICS_SERVICE = metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name


@dataclass(frozen=True)
class BridgeConfig:
    backends: tuple[str, ...]
    grpc_endpoint: tuple[str, int]
    http_endpoint: tuple[str, int]
    spool_dir: str
    artifact_stores: tuple[str, ...] = ()
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    max_request_bytes: int = 16 * 2**20
    silence_s: float = 3600.0
    state: str | None = None  # a PostgreSQL database shared by replicas
    delivery_processes: int = RUN_PROCESSES  # of a tracker whose SDK holds one run per process


def parse_endpoint(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT``; ``[::1]:PORT`` for IPv6."""
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise ConfigurationError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or default_host, int(port)


class _Refusal(TraceletError):
    def __init__(self, http_status: int, grpc_code: grpc.StatusCode, message: str, counted_as: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.grpc_code = grpc_code
        self.counted_as = counted_as


class _Gate:
    """What every request passes before its body is read: the token."""

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    def check(self, authorization: str | None) -> None:
        if self._expected is not None and not hmac.compare_digest((authorization or "").encode(), self._expected):
            raise _Refusal(401, grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token is required", "unauthenticated")


def _handle(receive: Callable[[bytes], Any], payload: bytes) -> bytes:
    """Run one request; every failure becomes a _Refusal the endpoint answers with."""
    try:
        return bytes(receive(payload).SerializeToString())
    except MalformedRequest as error:
        raise _Refusal(400, grpc.StatusCode.INVALID_ARGUMENT, str(error), "malformed") from None
    except Exception as error:  # the spool failed (full disk): the collector must send the request again
        _logger.exception("tracelet-otel bridge: could not spool a request")
        raise _Refusal(503, grpc.StatusCode.UNAVAILABLE, f"could not spool the records: {error}",
                       "spool failed") from None


def _grpc_server(config: BridgeConfig, receiver: Receiver, gate: _Gate) -> grpc.Server:
    def method(receive: Callable[[bytes], Any]) -> grpc.RpcMethodHandler:
        # No deserializer: the body is parsed by the receiver, so a malformed one gets our clear error.
        def export(payload: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                gate.check(dict(context.invocation_metadata()).get("authorization"))
                return _handle(receive, payload)
            except _Refusal as refusal:
                _refused(receiver, refusal, "grpc")
                context.abort(refusal.grpc_code, str(refusal))
                raise AssertionError("grpc's abort raises") from refusal
        return grpc.unary_unary_rpc_method_handler(export)

    server = grpc.server(ThreadPoolExecutor(INGEST_THREADS, thread_name_prefix="tracelet-otel-bridge-grpc"),
                         options=[("grpc.max_receive_message_length", config.max_request_bytes)])
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler(_TRACE_SERVICE, {"Export": method(receiver.receive_traces)}),
        grpc.method_handlers_generic_handler(_METRICS_SERVICE, {"Export": method(receiver.receive_metrics)}),
    ])
    host, port = config.grpc_endpoint
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if config.tls_cert and config.tls_key:
        with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
            credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
        server.add_secure_port(address, credentials)
    else:
        server.add_insecure_port(address)
    return server


def _refused(receiver: Receiver, refusal: _Refusal, endpoint: str) -> None:
    receiver.counters.count(rejected_request=refusal.counted_as)
    _logger.warning("tracelet-otel bridge: refused a %s request: %s", endpoint, refusal)


async def _read_body(request: Any, limit: int) -> bytes:
    too_large = _Refusal(413, grpc.StatusCode.RESOURCE_EXHAUSTED, f"the request is larger than {limit} bytes",
                         "too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DISCARD_AT_MOST * limit:
            raise too_large  # the connection is closed on a client that goes on sending
    if size > limit:
        # Read to the end, keeping nothing: a client still sending when the answer comes sees a broken
        # connection instead of the 413, and a collector retries a broken connection forever.
        raise too_large
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as error:
            raise _Refusal(400, grpc.StatusCode.INVALID_ARGUMENT, f"the gzip body is damaged: {error}",
                           "malformed") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise too_large
    elif encoding != "identity":
        raise _Refusal(415, grpc.StatusCode.INVALID_ARGUMENT, f"content-encoding {encoding!r} is not supported; "
                       "use gzip or none", "unsupported encoding")
    return body


def _http_app(config: BridgeConfig, receiver: Receiver, gate: _Gate, health: Callable[[], dict[str, Any]]) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    executor = ThreadPoolExecutor(INGEST_THREADS, thread_name_prefix="tracelet-otel-bridge-http")

    def endpoint(receive: Callable[[bytes], Any]) -> Callable[[Any], Any]:
        async def export(request: Any) -> Response:
            try:
                gate.check(request.headers.get("authorization"))
                if request.headers.get("content-type", "").split(";")[0].strip().lower() != PROTOBUF:
                    raise _Refusal(415, grpc.StatusCode.INVALID_ARGUMENT, f"the body must be {PROTOBUF}",
                                   "unsupported content type")
                body = await _read_body(request, config.max_request_bytes)
                answer = await asyncio.get_running_loop().run_in_executor(executor, _handle, receive, body)
            except _Refusal as refusal:
                _refused(receiver, refusal, "http")
                status = status_pb2.Status(code=_GRPC_TO_RPC_CODE[refusal.grpc_code], message=str(refusal))
                return Response(status.SerializeToString(), status_code=refusal.http_status, media_type=PROTOBUF)
            return Response(answer, media_type=PROTOBUF)
        return export

    async def health_endpoint(request: Any) -> JSONResponse:
        return JSONResponse(await asyncio.get_running_loop().run_in_executor(executor, health))

    return Starlette(routes=[
        Route("/v1/traces", endpoint(receiver.receive_traces), methods=["POST"]),
        Route("/v1/metrics", endpoint(receiver.receive_metrics), methods=["POST"]),
        Route("/health", health_endpoint, methods=["GET"]),
    ])


_GRPC_TO_RPC_CODE = {grpc.StatusCode.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
                     grpc.StatusCode.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
                     grpc.StatusCode.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.UNAVAILABLE: code_pb2.UNAVAILABLE}


class _HttpServer:
    """uvicorn in a thread of its own, so that the process's signal handling stays ours."""

    def __init__(self, config: BridgeConfig, app: Any) -> None:
        import uvicorn

        host, port = config.http_endpoint
        self._server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, lifespan="off", access_log=False, log_level="warning",
            ssl_certfile=config.tls_cert, ssl_keyfile=config.tls_key, timeout_graceful_shutdown=int(GRACE_S)))
        self._thread = threading.Thread(target=self._server.run, name="tracelet-otel-bridge-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the HTTP endpoint could not start (is the port taken?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(GRACE_S + 5)


def _observe(receiver: Receiver, runs: Runs) -> Callable[[CallbackOptions], list[Observation]]:
    def records(options: CallbackOptions) -> list[Observation]:
        counters = receiver.counters.as_dict()
        observations = [Observation(count, {"outcome": outcome}) for outcome, count in counters["records"].items()]
        observations.append(Observation(runs.delivered(), {"outcome": "delivered"}))
        observations.extend(Observation(count, {"outcome": "refused", "reason": reason})
                            for reason, count in counters["refused"].items())
        return observations
    return records


def serve(config: BridgeConfig) -> int:
    """Run until SIGTERM or SIGINT; then finish the requests in flight (their records reach the spools), stop the
    delivery processes after their batch, and return 0."""
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    backend_options = {name: dict(Options.resolve(None, load_backend(name).options).backend_options or {})
                       for name in config.backends}
    if config.state is not None and not config.state.startswith(postgres.SCHEME):
        raise ConfigurationError(f"--state must be a {postgres.SCHEME} URI, not {config.state!r}")
    if config.delivery_processes < 1:
        raise ConfigurationError(f"--delivery-processes must be at least 1, not {config.delivery_processes}")
    runs = Runs(config.spool_dir, backend_options, config.silence_s, config.state, config.delivery_processes)
    resumed = runs.resume()
    trusted = TrustedStores(config.artifact_stores)
    receiver = Receiver(runs, trusted, BridgeCounters())
    gate = _Gate(config.token)

    def health() -> dict[str, Any]:
        return {"status": "ok", "backends": list(config.backends), "runs_in_progress": runs.in_progress(),
                "waiting": runs.waiting(), "delivered": runs.delivered(), **receiver.counters.as_dict()}

    meter_provider = make_meter_provider(Resource.create({"service.name": "tracelet-otel-bridge"}))
    meter = meter_provider.get_meter("tracelet_otel.bridge")
    meter.create_observable_counter(semconv.METRIC_BRIDGE_RECORDS, callbacks=[_observe(receiver, runs)],
                                    unit="{record}", description="Records received, spooled, duplicate, "
                                    "delivered, and refused by reason")
    meter.create_observable_gauge(semconv.METRIC_BRIDGE_WAITING, callbacks=[lambda _: [Observation(runs.waiting())]],
                                  unit="{record}", description="Records spooled and waiting for delivery")

    grpc_server = _grpc_server(config, receiver, gate)
    http_server = _HttpServer(config, _http_app(config, receiver, gate, health))
    try:
        grpc_server.start()
        http_server.start()
    except Exception:
        grpc_server.stop(0)
        runs.close(GRACE_S)
        raise
    _logger.info("tracelet-otel bridge: OTLP on grpc %s:%d and http %s:%d%s; delivering to %s from %s (%d runs "
                 "taken up); payloads trusted from %s", *config.grpc_endpoint, *config.http_endpoint,
                 " with TLS" if config.tls_cert else "", ", ".join(config.backends), config.state or config.spool_dir,
                 resumed,
                 ", ".join(trusted.urls) or "no store")
    orphans_checked = time.monotonic()
    while not stop.wait(SILENCE_CHECK_S):
        runs.end_silent_runs()
        if config.state is not None and time.monotonic() - orphans_checked > ORPHANS_CHECK_S:
            orphans_checked = time.monotonic()
            try:
                runs.take_over_orphans()
            except Exception as error:  # the database is unreachable for a moment: the next check tries again
                _logger.warning("tracelet-otel bridge: could not look for runs no replica delivers: %s", error)
    _logger.info("tracelet-otel bridge: stopping; what was acknowledged is in the spools")
    http_server.stop()
    grpc_server.stop(GRACE_S).wait()
    runs.close(GRACE_S + 20)
    meter_provider.shutdown()
    return 0
