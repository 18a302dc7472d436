"""Records survive every trip unchanged (span events, the spool, OTLP to the bridge), and no event is ever
dropped."""

from __future__ import annotations

import math

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracelet_otel.bridge._decode import decode_request
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel.telemetry import events, semconv
from tracelet_otel.telemetry.emitter import Emitter
from tracelet_otel.telemetry.spans import EVENTS_PER_SPAN, SpanBuilder

RECORDS = [
    Record(RecordKind.SCALAR, "validation/loss", 2**62, 1700000000.123456, writer="validation",
           original_tag="loss", value=0.30000001192092896, rank=3),
    Record(RecordKind.SCALAR, "nan", -5, 1.5, value=math.nan),
    Record(RecordKind.IMAGE, "img", 1, 2.0, blob=Blob("file:///s/ab/abcd.png", "abcd", "image/png", 123)),
    Record(RecordKind.HPARAMS, "hparams", 0, 3.0, params={"lr": 0.1, "opt": "adam", "flag": True}),
    Record(RecordKind.EMBEDDING, "emb", 0, 4.0, blob=Blob("file:///t", "t", "text/tab-separated-values", 1),
           filename="tensors.tsv"),
    Record(RecordKind.CONSOLE, "stderr", 0, 5.0, text="epoch 3: loss 0.25 \u2713"),
]


def comparable(record: Record | None) -> object:
    """NaN is not equal to itself; everything else of a record must come back exactly."""
    assert record is not None
    return record._replace(value="nan") if record.value is not None and math.isnan(record.value) else record


def test_the_records_below_set_every_field_of_a_record():
    for name, default in zip(Record._fields, (None,) * 4 + tuple(Record._field_defaults.values()), strict=True):
        assert any(getattr(record, name) not in (default, None) for record in RECORDS), name


def test_encode_then_decode_gives_the_same_record():
    for record in RECORDS:
        name, attributes, timestamp = events.encode(record)
        assert comparable(events.decode(name, attributes)) == comparable(record)
        assert timestamp == int(record.wall_time * 1e9)


def test_every_field_survives_an_sdk_span_the_spool_and_otlp_to_the_bridge(tmp_path):
    spans, _ = emit(RECORDS)
    assert [comparable(record) for record in events.decode_span_events(spans)] == list(map(comparable, RECORDS))

    spool = Spool(str(tmp_path / "spool.sqlite"))
    spool.append(RECORDS)
    assert [comparable(record) for _, record in spool.pending(100)] == list(map(comparable, RECORDS))
    spool.close()

    span = SpanBuilder(Resource.create({semconv.RESOURCE_RUN_ID: "run"})).record_span(RECORDS, first_seq=1)
    (batch,) = decode_request(encode_spans([span])).runs.values()
    assert [(seq, comparable(record)) for seq, record in batch.records] == list(
        enumerate(map(comparable, RECORDS), start=1))


def test_events_of_other_instrumentations_are_ignored():
    assert events.decode("exception", {"exception.type": "ValueError"}) is None


def emit(records):
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    emitter = Emitter(SimpleSpanProcessor(exporter), Resource.create({}), MeterProvider(metric_readers=[reader]))
    emitter.emit(records)
    emitter.end_span()
    return exporter.get_finished_spans(), reader.get_metrics_data()


def losses(count: int):
    return [Record(RecordKind.SCALAR, "loss", step, 1.0 + step, value=float(step)) for step in range(count)]


def test_thousands_of_events_are_split_into_short_spans_and_none_is_dropped():
    spans, _ = emit(losses(2000))
    assert all(len(span.events) <= EVENTS_PER_SPAN and span.dropped_events == 0 for span in spans)
    assert [record.step for record in events.decode_span_events(spans)] == list(range(2000))


def test_the_environments_sampler_and_attribute_limits_never_drop_or_cut_records(monkeypatch):
    # Common in observability set-ups; they are meant for application traces, not for the records themselves.
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.01")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "16")
    records = [*RECORDS, *losses(1000)]

    spans, _ = emit(records)

    decoded = list(events.decode_span_events(spans))
    assert len(decoded) == len(records)
    assert [(record.tag, record.original_tag, record.blob, record.params) for record in decoded] == [
        (record.tag, record.original_tag, record.blob, record.params) for record in records]


def test_scalars_are_gauges_per_tag_and_writer_without_a_step():
    _, metrics = emit(losses(10))
    gauges = [metric for resource in metrics.resource_metrics for scope in resource.scope_metrics
              for metric in scope.metrics if metric.name == semconv.METRIC_SCALAR]
    (point,) = gauges[0].data.data_points
    assert dict(point.attributes) == {semconv.TAG: "loss", semconv.WRITER: ""}
    assert point.value == 9.0
