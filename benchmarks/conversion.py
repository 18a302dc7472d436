"""The agent's conversion, journal frame -> spooled record, in records/s with no backend; beside the spool's
own append rate and a per-stage breakdown, all in the same run.

    .venv/bin/python benchmarks/conversion.py [--records 100000] [--rounds 3] [--profile FILE]

The journal holds what ``add_scalar`` journals (one event of one scalar each, 10 tags). The stages run cumulatively,
so each line adds one stage's cost to the one above: read frames; parse and convert them to records; emit span
events (the OpenTelemetry SDK); decode the ended spans back into records (what every backend's exporter does); and
append them to a sqlite spool, which is the whole conversion the agent does per backend.

The bridge of the collector route does the same work from the other side: a last line measures it from OTLP
requests as the otlp backend sends them (1024 records each, serialized) to records in a spool.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import Event, SynchronousMultiSpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from torch.utils.tensorboard.summary import scalar

from tracelet_otel.bridge._decode import decode_request
from tracelet_otel.capture.journal import FrameType, JournalReader, JournalWriter, encode_event, encode_json
from tracelet_otel.config import Options
from tracelet_otel.conversion import EventConverter
from tracelet_otel.delivery import Spool
from tracelet_otel.payloads import ArtifactStore
from tracelet_otel.records import Record, RecordKind
from tracelet_otel.telemetry import events, semconv
from tracelet_otel.telemetry.emitter import EVENTS_PER_SPAN, Emitter
from tracelet_otel.telemetry.events import decode_span_events
from tracelet_otel.telemetry.providers import make_meter_provider, make_resource
from tracelet_otel.telemetry.spans import SpanBuilder

TAGS = [f"train/metric_{index}" for index in range(10)]


def write_journal(path: str, count: int) -> None:
    from tensorboard.compat.proto.event_pb2 import Event

    writer = JournalWriter(path)
    chunks = [encode_json(FrameType.WRITER, {"id": 1, "logdir": os.path.dirname(path), "call": None})]
    for index in range(count):
        event = Event(wall_time=1.7e9 + index / 1000, step=index // len(TAGS),
                      summary=scalar(TAGS[index % len(TAGS)], 1.0 / (index + 1)))
        chunks.append(encode_event(1, event.SerializeToString()))
    writer.append(b"".join(chunks))
    writer.close()


class _Spooling(SpanExporter):  # type: ignore[misc]
    """What a backend's exporter does with a span, minus waking its delivery worker."""

    def __init__(self, spool: Spool | None) -> None:
        self._spool = spool

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        records = list(decode_span_events(spans))
        if self._spool is not None:
            self._spool.append(records)
        return SpanExportResult.SUCCESS


def convert(journal: str, directory: str, through: str) -> int:
    """Run the agent's loop over the journal up to the stage ``through``; the records converted."""
    options = Options(tensorboard_log_dir=directory)
    converter = EventConverter(options, ArtifactStore(os.path.join(directory, "payloads")))
    resource = make_resource("bench", "conversion", "run")
    span_processor = SynchronousMultiSpanProcessor()  # the agent's, with one backend
    if through in ("decode", "spool"):
        spool = Spool(os.path.join(directory, f"spool-{time.monotonic_ns()}.sqlite")) if through == "spool" else None
        span_processor.add_span_processor(SimpleSpanProcessor(_Spooling(spool)))
    emitter = Emitter(span_processor, resource, make_meter_provider(resource))
    reader = JournalReader(journal)
    converted = 0
    while frames := reader.frames():
        for frame in frames:
            if frame.type == FrameType.WRITER:
                converter.register_writer(frame.json())
            elif through != "read":
                records = converter.convert_event(*frame.event())
                converted += len(records)
                if through != "convert":
                    emitter.emit(records)
        emitter.end_span()
    reader.close()
    return converted


def otlp_requests(records: list[Record]) -> list[bytes]:
    """What the otlp backend sends for these records: our span events with their sequence numbers."""
    spans = SpanBuilder(make_resource("bench", "conversion", "run"))
    requests = []
    for first in range(0, len(records), 4 * EVENTS_PER_SPAN):
        span_events = []
        for seq, record in enumerate(records[first : first + 4 * EVENTS_PER_SPAN], first + 1):
            name, attributes, timestamp = events.encode(record)
            span_events.append(Event(name, {**attributes, semconv.RECORD_SEQ: seq}, timestamp, limit=None))
        request = encode_spans([spans.span(semconv.SPAN_NAME, span_events[start : start + EVENTS_PER_SPAN])
                                for start in range(0, len(span_events), EVENTS_PER_SPAN)])
        requests.append(request.SerializeToString())
    return requests


def receive(requests: list[bytes], spool: Spool) -> None:
    """The bridge's work per request and backend, short of the network: parse, decode, spool once."""
    for body in requests:
        for batch in decode_request(ExportTraceServiceRequest.FromString(body)).runs.values():
            spool.append_new(batch.records, batch.unreadable)


def timed(function: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def append(spool: Spool, records: list[Record]) -> None:
    for first in range(0, len(records), EVENTS_PER_SPAN):  # one span's records at a time, as the exporter does
        spool.append(records[first : first + EVENTS_PER_SPAN])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of the whole conversion (through spool) here")
    args = parser.parse_args()
    stages = ("read", "convert", "emit", "decode", "spool")
    records = [Record(RecordKind.SCALAR, TAGS[index % len(TAGS)], index // len(TAGS), 1.7e9 + index / 1000,
                      original_tag=TAGS[index % len(TAGS)], value=1.0 / (index + 1)) for index in range(args.records)]
    with temporary_workdir() as directory:
        journal = os.path.join(directory, "journal")
        write_journal(journal, args.records)
        requests = otlp_requests(records)
        seconds: dict[str, list[float]] = {stage: [] for stage in (*stages, "append", "bridge")}
        for round_ in range(args.rounds):
            for stage in stages:
                seconds[stage].append(timed(convert, journal, directory, stage))
            spools = {name: Spool(os.path.join(directory, f"{name}-{round_}.sqlite")) for name in ("append", "bridge")}
            seconds["append"].append(timed(append, spools["append"], records))
            seconds["bridge"].append(timed(receive, requests, spools["bridge"]))
        if args.profile:
            cProfile.runctx("convert(journal, directory, 'spool')", globals(), locals(), args.profile)

    best = {stage: min(values) for stage, values in seconds.items()}
    previous = 0.0
    for stage in stages:
        per_record = best[stage] / args.records * 1e6
        print(f"through {stage:8s} {per_record:6.1f} us/record  (+{per_record - previous:5.1f})")
        previous = per_record
    print(f"conversion        {args.records / best['spool']:10,.0f} records/s "
          f"(median of {args.rounds}: {args.records / statistics.median(seconds['spool']):,.0f})")
    print(f"spool append      {args.records / best['append']:10,.0f} records/s")
    print(f"bridge            {args.records / best['bridge']:10,.0f} records/s "
          f"({best['bridge'] / args.records * 1e6:.1f} us/record: OTLP request -> spooled record)")


if __name__ == "__main__":
    main()
