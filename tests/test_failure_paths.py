"""Failure paths of the shared machinery: each ends in a counted, reported outcome, never in silent loss, a hang
or an exception in the training process. Faults are injected into real parts (a real spool, MLflow store,
agent and workers)."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time

import pytest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import helper_processes
from tracelet_otel.backends import RunInfo
from tracelet_otel.capture import journal
from tracelet_otel.delivery import Delivery, Spool, TrackerSpanExporter
from tracelet_otel.delivery.sender import Sender
from tracelet_otel.records import Record, RecordKind
from tracelet_otel.telemetry import events


def scalars(count: int, tag: str = "loss") -> list[Record]:
    return [Record(RecordKind.SCALAR, tag, step, 1_700_000_000.0 + step, value=float(step)) for step in range(count)]


def span_of(records: list[Record]) -> ReadableSpan:
    return ReadableSpan(name="tensorboard", events=[Event(*events.encode(record)) for record in records])


def mlflow_exporter(tmp_path, **kwargs) -> TrackerSpanExporter:
    info = dataclasses.asdict(RunInfo("ours", "failure-paths", "tracelet-tests"))
    exporter = TrackerSpanExporter(str(tmp_path / "mlflow.spool.sqlite"), Delivery("mlflow", None, {}, info), **kwargs)
    exporter.wait_ready()
    return exporter


def test_the_spool_limit_bounds_what_waits_not_the_files_high_water_mark(mlflow_store, tmp_path):
    """sqlite keeps freed pages: after a backlog was delivered, the file stays large while nothing waits."""
    exporter = mlflow_exporter(tmp_path, max_spool_bytes=100_000)
    assert exporter.export([span_of(scalars(5000))]) is SpanExportResult.SUCCESS
    assert exporter.force_flush(60_000)
    on_disk = sum(os.path.getsize(exporter.spool.path + suffix) for suffix in ("", "-wal"))
    assert on_disk > 100_000

    assert exporter.export([span_of(scalars(5000, "accuracy"))]) is SpanExportResult.SUCCESS
    report = exporter.close()
    exporter.spool.close()
    assert (report["delivered"], report["dropped"], report["undelivered"]) == (10_000, {}, 0)


def test_delivered_records_leave_the_spool(tmp_path):
    spool = Spool(str(tmp_path / "spool.sqlite"))
    spool.append(scalars(20_000))
    backlog = spool.waiting_bytes()
    spool.mark_delivered(spool.total())
    assert spool.count() == 0
    assert spool.waiting_bytes() < backlog / 10
    spool.close()


def test_records_the_spool_refuses_are_counted(mlflow_store, tmp_path, monkeypatch):
    exporter = mlflow_exporter(tmp_path)

    def disk_full(records, position=None):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(exporter.spool, "append", disk_full)
    assert exporter.export([span_of(scalars(300))]) is SpanExportResult.FAILURE
    report = exporter.close()
    exporter.spool.close()
    assert report["dropped"] == {"could not be spooled: OperationalError": 300}


def test_the_sender_keeps_delivering_after_an_unexpected_error(mlflow_store, tmp_path, monkeypatch):
    from tracelet_otel_mlflow import MlflowBackend

    spool = Spool(str(tmp_path / "spool.sqlite"))
    spool.append(scalars(50))
    backend_run = MlflowBackend().open_run(RunInfo("ours", "sender", "tracelet-tests"), {})
    real_pending, failures = spool.pending, []

    def pending_failing_once(limit):
        if not failures:
            failures.append(limit)
            raise sqlite3.OperationalError("disk I/O error")
        return real_pending(limit)

    monkeypatch.setattr(spool, "pending", pending_failing_once)
    sender = Sender(spool, backend_run)
    assert sender.drain(30)
    sender.stop()
    assert failures and len(mlflow_store.client.get_metric_history(backend_run.run_id, "loss")) == 50
    spool.close()


def test_a_start_that_fails_after_the_runs_opened_leaves_no_run_and_no_process(mlflow_store, monkeypatch):
    def broken(sink):
        raise RuntimeError("instrumentation broke")

    monkeypatch.setattr(tracelet_otel.capture, "install", broken)
    with pytest.raises(RuntimeError, match="instrumentation broke"):
        tracelet_otel.start_logging("doomed", "tracelet-tests")

    deadline = time.monotonic() + 30
    while helper_processes(os.getpid()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert helper_processes(os.getpid()) == []
    experiment = mlflow_store.client.get_experiment_by_name("tracelet-tests")
    assert mlflow_store.client.search_runs([experiment.experiment_id]) == []  # discarded, not left RUNNING
    assert os.listdir(".tracelet/runs") == []


def test_stop_logging_does_not_raise_when_the_journal_cannot_be_ended(mlflow_store, tmp_path, monkeypatch, caplog):
    """A full disk at stop: the end marker cannot be written; the agent is told on its stdin instead."""
    tracelet_otel.start_logging("full-disk-at-stop", "tracelet-tests", config={"stop_timeout": 60})
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        for step in range(10):
            writer.add_scalar("loss", step, step)
    time.sleep(0.3)  # journaled
    real_append = journal.JournalWriter.append

    def end_marker_fails(self, chunk):
        if chunk[journal._HEADER.size - 1] == journal.FrameType.END:
            raise OSError(28, "No space left on device")
        real_append(self, chunk)

    monkeypatch.setattr(journal.JournalWriter, "append", end_marker_fails)
    started = time.monotonic()
    run = tracelet_otel.stop_logging()
    assert time.monotonic() - started < 30
    assert run.delivery["mlflow"]["delivered"] == 10
    assert "could not end the capture journal" in caplog.text


def test_a_helper_whose_imports_print_to_stdout_still_reports(mlflow_store, tmp_path, monkeypatch):
    noisy = tmp_path / "noisy"
    noisy.mkdir()
    (noisy / "sitecustomize.py").write_text("print('hello from a sitecustomize')\nprint('{not json')\n")
    monkeypatch.setenv("PYTHONPATH", str(noisy))
    tracelet_otel.start_logging("noisy", "tracelet-tests")
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_scalar("loss", 1.0, 0)
    run = tracelet_otel.stop_logging()
    assert run.delivery["mlflow"]["delivered"] == 1


def test_a_payload_gone_from_its_store_is_dropped_and_counted_not_retried_forever(mlflow_store, tmp_path):
    """A retention rule or a person removed the file: the other records of the batch still arrive."""
    from tracelet_otel.payloads import ArtifactStore
    from tracelet_otel.reports import DropReason
    from tracelet_otel_mlflow import MlflowBackend

    blob = ArtifactStore(str(tmp_path / "store")).put(b"not a real png", "image/png")
    os.remove(blob.uri.removeprefix("file://"))
    spool = Spool(str(tmp_path / "spool.sqlite"))
    spool.append([*scalars(10), Record(RecordKind.IMAGE, "sample", 0, 1_700_000_000.0, blob=blob)])
    backend_run = MlflowBackend().open_run(RunInfo("ours", "missing-payload", "tracelet-tests"), {})
    sender = Sender(spool, backend_run)
    assert sender.drain(30)
    sender.stop()
    counters = sender.counters
    assert (counters.delivered, dict(counters.dropped)) == (10, {DropReason.PAYLOAD_MISSING: 1})
    assert len(mlflow_store.client.get_metric_history(backend_run.run_id, "loss")) == 10
    spool.close()
