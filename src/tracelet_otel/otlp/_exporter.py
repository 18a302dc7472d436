"""Where the otlp backend sends, and how: typed options over the standard ``OTEL_EXPORTER_OTLP_*`` variables.

An option that is set wins; whatever is left unset is read by the OTLP exporter classes themselves from the
standard variables (``OTEL_EXPORTER_OTLP_TRACES_*`` before ``OTEL_EXPORTER_OTLP_*``), so TLS client keys,
compression and credential providers work as the OpenTelemetry specification says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.util.re import parse_env_headers

from tracelet_otel._logging import FirstFailure

__all__ = ["DEFAULT_TIMEOUT_S", "OPTIONS", "PROTOCOLS", "OtlpSettings", "export_errors"]

# Short, so that the sender's backoff (0.5 s doubling to 30 s) governs an outage rather than the exporter's own
# retries: with nothing listening, an export gives up after ~1 s instead of ~13 s.
DEFAULT_TIMEOUT_S = 5.0
PROTOCOLS = ("grpc", "http/protobuf")
OPTIONS: Mapping[str, type] = {
    "otlp_endpoint": str,  # like OTEL_EXPORTER_OTLP_ENDPOINT: for HTTP, /v1/traces is appended
    "otlp_protocol": str,
    "otlp_headers": str,  # "key=value,key2=value2", like OTEL_EXPORTER_OTLP_HEADERS
    "otlp_insecure": bool,  # gRPC: plain text to an endpoint without a scheme
    "otlp_certificate": str,  # a CA bundle to trust for TLS
    "otlp_timeout": float,  # seconds per export
}
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
_EXPORTER_LOGGERS = ("opentelemetry.exporter.otlp.proto.grpc.exporter",
                     "opentelemetry.exporter.otlp.proto.http.trace_exporter")


@dataclass(frozen=True)
class OtlpSettings:
    protocol: str
    endpoint: str | None
    headers: dict[str, str] | None
    insecure: bool | None
    certificate: str | None
    timeout: float | None

    @classmethod
    def resolve(cls, options: Mapping[str, Any], environ: Mapping[str, str] = os.environ) -> OtlpSettings:
        """Raises:
        ValueError: an unknown protocol (the message names the valid ones).
        """
        protocol = (options.get("otlp_protocol") or environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")
        if protocol not in PROTOCOLS:
            raise ValueError(f"otlp_protocol {protocol!r} is not supported; use one of {', '.join(PROTOCOLS)}")
        timeout = options.get("otlp_timeout")
        if timeout is None and not any(environ.get(name) for name in _TIMEOUT_VARIABLES):
            timeout = DEFAULT_TIMEOUT_S
        headers = options.get("otlp_headers")
        return cls(protocol=protocol, endpoint=options.get("otlp_endpoint"),
                   headers=dict(parse_env_headers(headers, liberal=True)) if headers else None,
                   insecure=options.get("otlp_insecure"), certificate=options.get("otlp_certificate"),
                   timeout=timeout)

    def exporter(self) -> SpanExporter:
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            credentials = None
            if self.certificate:
                import grpc

                with open(self.certificate, "rb") as file:
                    credentials = grpc.ssl_channel_credentials(root_certificates=file.read())
            return GrpcExporter(endpoint=self.endpoint, insecure=self.insecure, credentials=credentials,
                                headers=self.headers, timeout=self.timeout)
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        endpoint = f"{self.endpoint.rstrip('/')}/v1/traces" if self.endpoint else None
        session = _session_trusting(self.certificate) if self.certificate else None
        return HttpExporter(endpoint=endpoint, certificate_file=self.certificate, headers=self.headers,
                            timeout=self.timeout, session=session)

    @property
    def target(self) -> str:
        """The endpoint in words, for messages."""
        return f"{self.endpoint or 'the OTEL_EXPORTER_OTLP_* endpoint'} ({self.protocol})"


_export_errors: FirstFailure | None = None


def export_errors() -> FirstFailure:
    """The process's one handler on the OTLP exporters' loggers (installed on first use): it keeps what they say
    went wrong (UNAVAILABLE, 401, a certificate refused) instead of their logging every retry. The first message
    of an export names the cause; the last only says that the exporter gave up."""
    global _export_errors
    if _export_errors is None:
        _export_errors = FirstFailure(logging.WARNING)
        for name in _EXPORTER_LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(_export_errors)
            logger.propagate = False
    return _export_errors


def _session_trusting(certificate: str) -> Any:
    """A requests session that verifies with ``certificate`` even where ``REQUESTS_CA_BUNDLE`` is set: requests
    lets that variable override a session's own ``verify``, so the exporter's ``certificate_file`` alone would be
    ignored there. Proxies still come from the environment."""
    import requests

    class Session(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
            settings["verify"] = self.verify
            return settings

    session = Session()
    session.verify = certificate
    return session
