"""One OTLP request in, its records in the spools: what the gRPC and the HTTP endpoint share.

A request is acknowledged only once ``receive_traces`` returned, that is once its records are in the spools;
when they cannot be spooled it raises and the endpoint answers "unavailable", so the collector sends again.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracelet_otel.bridge._decode import decode_request
from tracelet_otel.bridge._runs import Runs
from tracelet_otel.bridge._trust import TrustedStores
from tracelet_otel.errors import MalformedRequest
from tracelet_otel.records import Record

__all__ = ["BridgeCounters", "Receiver"]

_logger = logging.getLogger("tracelet_otel.bridge")


class BridgeCounters:
    """Records received, spooled (new), already spooled (resent), refused (by reason), spans that are not ours,
    and requests turned away (by reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: Counter[str] = Counter()  # received, spooled, duplicate
        self.refused: Counter[str] = Counter()
        self.skipped_spans = 0
        self.rejected_requests: Counter[str] = Counter()

    def count(self, records: Counter[str] | None = None, refused: Counter[str] | None = None,
              skipped_spans: int = 0, rejected_request: str | None = None) -> None:
        with self._lock:
            self.records.update(records or {})
            self.refused.update(refused or {})
            self.skipped_spans += skipped_spans
            if rejected_request:
                self.rejected_requests[rejected_request] += 1

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"records": dict(self.records), "refused": dict(self.refused),
                    "skipped_spans": self.skipped_spans, "rejected_requests": dict(self.rejected_requests)}


class Receiver:
    def __init__(self, runs: Runs, trusted: TrustedStores, counters: BridgeCounters) -> None:
        self._runs = runs
        self._trusted = trusted
        self.counters = counters

    def receive_traces(self, payload: bytes) -> ExportTraceServiceResponse:
        """Raises:
        MalformedRequest: the payload is not an ``ExportTraceServiceRequest``.
        """
        request = _parse(ExportTraceServiceRequest, payload)
        decoded = decode_request(request)
        records: Counter[str] = Counter()
        refused = Counter(decoded.refused)
        for batch in decoded.runs.values():
            admitted: list[tuple[int, Record]] = []
            refused_seqs = list(batch.unreadable)
            details: Counter[str] = Counter()
            for seq, record in batch.records:
                refusal = self._trusted.refusal(record)
                if refusal is None:
                    admitted.append((seq, record))
                else:
                    refused[refusal[0]] += 1
                    details[refusal[1]] += 1
                    refused_seqs.append(seq)
            for detail, count in details.items():  # never fetched, never spooled: said once per request
                _logger.warning("tracelet-otel bridge: refused %d record(s) of run %s: %s", count, batch.run_id, detail)
            stored = self._runs.accept(batch, admitted, refused_seqs)
            records.update(received=len(batch.records), spooled=stored, duplicate=len(admitted) - stored)
        for reason, count in decoded.refused.items():
            _logger.warning("tracelet-otel bridge: refused %d: %s", count, reason)
        self.counters.count(records, refused, decoded.skipped_spans)
        response = ExportTraceServiceResponse()
        if sum(refused.values()):
            # The spans were taken; some of their events were not: a warning in OTLP's terms.
            response.partial_success.error_message = "refused " + ", ".join(
                f"{count} ({reason})" for reason, count in sorted(refused.items()))
        return response

    def receive_metrics(self, payload: bytes) -> ExportMetricsServiceResponse:
        """Metrics are accepted and not kept: trackers get records from span events only (the live gauges
        belong in the team's metrics pipeline)."""
        _parse(ExportMetricsServiceRequest, payload)
        return ExportMetricsServiceResponse()


def _parse(message_type: Any, payload: bytes) -> Any:
    try:
        return message_type.FromString(payload)
    except (DecodeError, ValueError) as error:
        raise MalformedRequest(f"the body is not an OTLP {message_type.DESCRIPTOR.name} in protobuf: {error}") from None
