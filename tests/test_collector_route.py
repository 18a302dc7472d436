"""Training job -> a real OpenTelemetry collector (rotel) -> the bridge -> MLflow, with each hop failing once.

The job sends OTLP only; every scalar of its event files must reach MLflow exactly once, in the one run the
bridge created, however the hops after it fail.
"""

from __future__ import annotations

import time

import pytest

from tests.bridge_support import Bridge, Collector, Job, mlflow_run, running, wait_for_status, wait_until
from tests.support import MlflowStore

pytest.importorskip("rotel", reason="the collector for these tests is the rotel package (requirements-test.txt)")


@pytest.fixture
def store(tmp_path) -> MlflowStore:
    return MlflowStore(f"sqlite:///{tmp_path}/mlflow.db")


def spooled(bridge: Bridge) -> int:
    return int(bridge.health()["records"].get("spooled", 0))


def test_every_scalar_arrives_once_while_the_bridge_is_killed_mid_run_and_restarted(tmp_path, store):
    bridge = Bridge(str(tmp_path), store.uri).start()
    collector = Collector(str(tmp_path), bridge.grpc).start()
    job = Job(str(tmp_path), "bridge-killed", collector.grpc, [300, 300, 300])
    with running(job, collector, bridge):
        wait_until(lambda: mlflow_run(store, job.run_id), 30, "the bridge to create the MLflow run")
        bridge.kill()  # records acknowledged and spooled, others on their way: the collector retries them
        job.go_on()
        bridge.start()
        assert job.finish()["undelivered"] == 0

        run = wait_for_status(store, job.run_id, "FINISHED", timeout=90)
        assert store.metric_points(run.info.run_id) == job.scalars()


def test_every_scalar_arrives_once_when_the_collector_is_down_for_a_while(tmp_path, store):
    bridge = Bridge(str(tmp_path), store.uri).start()
    collector = Collector(str(tmp_path), bridge.grpc).start()
    # A short export timeout, so that the outage outlasts the exporter's own retries and the job's sender retries.
    job = Job(str(tmp_path), "collector-down", collector.grpc, [300, 300, 300], otlp_timeout=1)
    with running(job, collector, bridge):
        wait_until(lambda: spooled(bridge) == 600, 30, "the first phase at the bridge")
        collector.terminate()
        job.go_on()  # logged while nothing listens: the job's spool keeps it and its sender retries
        time.sleep(2)
        collector.start()
        delivery = job.finish()
        assert (delivery["undelivered"], delivery["dropped"]) == (0, {})
        assert delivery["retried"] > 0  # the job did meet the outage

        run = wait_for_status(store, job.run_id, "FINISHED", timeout=90)
        assert store.metric_points(run.info.run_id) == job.scalars()
