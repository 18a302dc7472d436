"""Training jobs that send only OTLP, straight to a real bridge (``tracelet-otel serve``) that delivers to MLflow.

The bridge runs as it would in production, in a process of its own, and cannot import torch or tensorboardX.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
import urllib.request
import uuid

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tests.bridge_support import (
    Bridge,
    Job,
    mlflow_run,
    self_signed_certificate,
    wait_for_status,
    wait_until,
)
from tests.support import MlflowStore, processes_below
from tracelet_otel.backends import RunInfo
from tracelet_otel.delivery import Delivery, Spool
from tracelet_otel.delivery.worker import CREATING_KEY, open_run
from tracelet_otel.otlp import OtlpBackend
from tracelet_otel.records import Record, RecordKind
from tracelet_otel_mlflow import MlflowBackend


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> MlflowStore:
    return MlflowStore(f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db")


@pytest.fixture(scope="module")
def bridge(tmp_path_factory, store):
    directory = str(tmp_path_factory.mktemp("bridge"))
    # TRACELET_* variables in its environment must not make the bridge start a run of its own.
    bridge = Bridge(directory, store.uri, "--artifact-store", os.path.join(directory, "artifacts"),
                    "--silence-timeout", "4",
                    environment={"TRACELET_BACKEND": "mlflow", "TRACELET_PROJECT": "the-bridge-itself",
                                 "OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "500"})
    try:
        yield bridge.start()
    finally:
        bridge.kill()
    assert store.client.get_experiment_by_name("the-bridge-itself") is None
    assert not os.path.exists(os.path.join(directory, ".tracelet"))


def scalars(count: int, first_step: int = 0) -> list[Record]:
    return [Record(RecordKind.SCALAR, "loss", step, 1_700_000_000.0 + step, value=step / 8)
            for step in range(first_step, first_step + count)]


def otlp_run(bridge: Bridge, name: str, run_id: str | None = None):
    """The job side of the otlp backend, driven by the test: it can resend, reorder and pause."""
    return OtlpBackend().open_run(RunInfo(run_id or uuid.uuid4().hex, name, "collector-route"),
                                  {"otlp_endpoint": bridge.grpc})


def steps(store: MlflowStore, run_id: str) -> list[int]:
    return sorted(metric.step for metric in store.client.get_metric_history(run_id, "loss"))


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_job_that_sends_only_otlp_gets_its_run_in_mlflow(bridge, store, tmp_path, protocol):
    name = "only-otlp-" + protocol.split("/")[0]
    endpoint = bridge.grpc if protocol == "grpc" else bridge.http
    job = Job(str(tmp_path), name, endpoint, [300], protocol=protocol, image=True,
              artifact_store=os.path.join(bridge.directory, "artifacts"))
    try:
        delivery = job.finish()
    finally:
        job.kill()

    assert (delivery["undelivered"], delivery["finished"]) == (0, "FINISHED")
    run = wait_for_status(store, job.run_id, "FINISHED")
    assert run.info.run_name == name
    assert store.client.get_experiment(run.info.experiment_id).name == "collector-route"
    assert store.metric_points(run.info.run_id) == job.scalars()  # every scalar of the event files, once
    assert [path for path in store.artifacts(run.info.run_id, "images") if path.endswith(".png")]


def test_two_jobs_at_once_make_two_complete_runs(bridge, store, tmp_path):
    jobs = [Job(str(tmp_path), name, bridge.grpc, [400, 400], artifact_store=os.path.join(bridge.directory, "a"))
            for name in ("first-of-two", "second-of-two")]
    try:
        for job in jobs:
            job.go_on()
        for job in jobs:
            assert job.finish()["undelivered"] == 0
    finally:
        for job in jobs:
            job.kill()

    for job in jobs:
        run = wait_for_status(store, job.run_id, "FINISHED")
        assert store.metric_points(run.info.run_id) == job.scalars()


def test_records_resent_and_reordered_are_stored_once_and_the_run_ends_when_all_arrived(bridge, store):
    run_id = uuid.uuid4().hex
    records = scalars(600)
    late = otlp_run(bridge, "resent", run_id)
    late.deliver(records[300:], through_seq=600)  # the second half overtakes the first
    late.finish("FINISHED")  # says: 600 records
    wait_until(lambda: mlflow_run(store, run_id) is not None, 60, "the run to be created")
    time.sleep(1.0)
    assert mlflow_run(store, run_id).info.status == "RUNNING"  # 300 of 600 arrived: not the end yet

    resend = otlp_run(bridge, "resent", run_id)
    resend.deliver(records[:300], through_seq=300)
    resend.deliver(records[300:], through_seq=600)  # a collector sending again what it sent before
    resend.finish("FINISHED")

    run = wait_for_status(store, run_id, "FINISHED")
    assert steps(store, run.info.run_id) == list(range(600))
    assert bridge.health()["records"]["duplicate"] >= 300


def test_an_ended_run_keeps_a_small_spool_and_a_late_resend_changes_nothing(bridge, store):
    run_id = uuid.uuid4().hex
    records = scalars(20_000)
    job = otlp_run(bridge, "compacted", run_id)
    for first in range(0, len(records), 1000):
        job.deliver(records[first : first + 1000], through_seq=first + 1000)
    job.finish("FINISHED")
    run = wait_for_status(store, run_id, "FINISHED")

    # The spool held 20k records (~2.6 MB); what it must remember once the run is over is which arrived.
    spool = os.path.join(bridge.directory, "spool", "runs", run_id, "mlflow.spool.sqlite")
    wait_until(lambda: os.path.getsize(spool) < 100_000, 30, "the ended run's spool to shrink")
    late = otlp_run(bridge, "compacted", run_id)  # a collector's retry queue, long after
    late.deliver(records[:1000], through_seq=1000)
    late.finish("FINISHED")
    time.sleep(1.0)
    assert steps(store, run.info.run_id) == list(range(20_000))
    assert len(store.client.search_runs([run.info.experiment_id], f"tags.`tracelet.run_id` = '{run_id}'")) == 1


def test_a_run_whose_job_falls_silent_ends_killed_and_goes_on_when_it_speaks_again(bridge, store):
    run_id = uuid.uuid4().hex
    job = otlp_run(bridge, "silent", run_id)
    job.deliver(scalars(10), through_seq=10)
    killed = wait_for_status(store, run_id, "KILLED", timeout=30)  # --silence-timeout 4

    job.deliver(scalars(10, first_step=10), through_seq=20)
    job.finish("FINISHED")
    finished = wait_for_status(store, run_id, "FINISHED")
    assert finished.info.run_id == killed.info.run_id
    assert steps(store, run_id=finished.info.run_id) == list(range(20))


def test_a_bridge_killed_and_restarted_delivers_into_the_run_it_created(bridge, store):
    run_id = uuid.uuid4().hex
    job = otlp_run(bridge, "across-restart", run_id)
    job.deliver(scalars(200), through_seq=200)
    created = wait_until(lambda: mlflow_run(store, run_id), 30, "the MLflow run")
    bridge.kill()
    bridge.start()

    job.deliver(scalars(200, first_step=200), through_seq=400)
    job.finish("FINISHED")
    run = wait_for_status(store, run_id, "FINISHED")  # one run for the job, asserted by mlflow_run
    assert run.info.run_id == created.info.run_id
    assert steps(store, run.info.run_id) == list(range(400))


def test_sigterm_ends_the_bridge_cleanly_and_the_next_one_delivers_what_it_acknowledged(bridge, store):
    run_id = uuid.uuid4().hex
    job = otlp_run(bridge, "across-sigterm", run_id)
    job.deliver(scalars(300), through_seq=300)  # acknowledged: in the spool
    assert bridge.terminate() == 0
    bridge.start()

    job.finish("FINISHED")
    run = wait_for_status(store, run_id, "FINISHED")
    assert steps(store, run.info.run_id) == list(range(300))


def test_a_delivery_process_that_dies_is_started_again_and_delivers(bridge, store):
    (deliverer,) = [pid for pid, command in processes_below(bridge.pid).items()
                    if "tracelet_otel.delivery mlflow --bridge" in command]
    os.kill(deliverer, signal.SIGKILL)

    run_id = uuid.uuid4().hex
    job = otlp_run(bridge, "after-a-crash", run_id)
    job.deliver(scalars(50), through_seq=50)
    job.finish("FINISHED")
    run = wait_for_status(store, run_id, "FINISHED")
    assert steps(store, run.info.run_id) == list(range(50))
    assert "delivery process exited" in bridge.read_log()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_over_tls_a_job_that_trusts_the_bridges_certificate_is_delivered(tmp_path, store, protocol):
    certificate, key = self_signed_certificate(str(tmp_path))
    bridge = Bridge(str(tmp_path), store.uri, tls=(certificate, key))
    try:
        bridge.start()  # its /health answers over https, to a client that trusts the certificate
        run_id = uuid.uuid4().hex
        job = OtlpBackend().open_run(RunInfo(run_id, "tls", "collector-route"), {
            "otlp_endpoint": bridge.grpc if protocol == "grpc" else bridge.http, "otlp_protocol": protocol,
            "otlp_certificate": certificate})
        job.deliver(scalars(20), through_seq=20)
        job.finish("FINISHED")
        run = wait_for_status(store, run_id, "FINISHED")
        assert steps(store, run.info.run_id) == list(range(20))
    finally:
        bridge.kill()


def test_spans_that_are_not_ours_are_skipped_and_metrics_are_accepted(bridge):
    foreign = ExportTraceServiceRequest()
    resource_spans = foreign.resource_spans.add()
    resource_spans.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="web")))
    resource_spans.scope_spans.add().spans.add(name="GET /", trace_id=b"\1" * 16, span_id=b"\2" * 8)
    before = bridge.health()["skipped_spans"]
    with grpc.insecure_channel(f"127.0.0.1:{bridge.grpc_port}") as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        export(foreign.SerializeToString(), timeout=10)
        metrics = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        metrics(ExportMetricsServiceRequest().SerializeToString(), timeout=10)
    request = urllib.request.Request(f"{bridge.http}/v1/metrics", ExportMetricsServiceRequest().SerializeToString(),
                                     {"Content-Type": "application/x-protobuf"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200

    assert bridge.health()["skipped_spans"] == before + 1


def test_the_bridge_reports_its_counters_as_opentelemetry_metrics(bridge):
    otlp_run(bridge, "counted").deliver(scalars(5), through_seq=5)

    def exported() -> bool:
        log = bridge.read_log()  # OTEL_METRICS_EXPORTER=console prints them there
        return '"tracelet.bridge.records"' in log and '"tracelet.bridge.waiting"' in log and '"spooled"' in log
    wait_until(exported, 20, "the bridge's metrics")


def test_a_tracker_run_created_just_before_a_crash_is_found_again_not_created_twice(tmp_path, store):
    info = RunInfo(uuid.uuid4().hex, "crash-window", "collector-route")
    options = {"mlflow_tracking_uri": store.uri}
    spool = Spool(str(tmp_path / "mlflow.spool.sqlite"))
    Delivery("mlflow", None, options, dataclasses.asdict(info)).save(spool)
    spool.set_meta(CREATING_KEY, True)  # a delivery process was creating the run: MLflow made it, then a crash
    created = MlflowBackend().open_run(info, options)

    reopened = open_run(spool)
    assert reopened.run_id == created.run_id
    assert Delivery.load(spool).run["run_id"] == created.run_id
    assert mlflow_run(store, info.run_id).info.run_id == created.run_id  # and no second one


def test_a_record_is_spooled_once_whatever_order_and_however_often_it_arrives(tmp_path):
    spool = Spool(str(tmp_path / "spool.sqlite"))
    records = {seq: record for seq, record in enumerate(scalars(10), 1)}
    arrivals = [[9, 10], [1, 2, 3], [2, 3], [5], [4, 5, 6, 6, 7, 8], [1, 10]]  # 6 twice in one request
    stored = [spool.append_new([(seq, records[seq]) for seq in arrival]) for arrival in arrivals]

    assert stored == [2, 3, 0, 1, 4, 0]
    assert spool.received_through() == 10
    assert sorted(record.step for _, record in spool.pending(100)) == list(range(10))
    spool.mark_delivered(10)  # delivered rows leave the spool; what arrived is still remembered
    assert spool.append_new([(3, records[3])], seen=[11]) == 0
    assert spool.received_through() == 11
