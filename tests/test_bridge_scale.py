"""The collector route at a platform team's scale: many jobs at once through one bridge into the team's MLflow on
PostgreSQL. Real processes on 127.0.0.1; the runs are sent as their jobs' ``otlp`` backends send them."""

from __future__ import annotations

from tests.bridge_support import Bridge, LoadGenerator, running, wait_until
from tests.conftest import MlflowServer
from tests.support import MlflowStore


def finished_runs(store: MlflowStore) -> dict[str, str]:
    """Our run id -> the MLflow run id, for every FINISHED run."""
    experiments = [experiment.experiment_id for experiment in store.client.search_experiments()]
    runs = store.client.search_runs(experiments, filter_string="attributes.status = 'FINISHED'", max_results=1000)
    return {run.data.tags["tracelet.run_id"]: run.info.run_id for run in runs}


def test_a_hundred_runs_at_once_reach_mlflow_on_postgresql_every_point_once_and_no_request_times_out(
        tmp_path, postgres):
    server = MlflowServer(str(tmp_path), postgres.database(), workers=2)
    server.start()
    bridge = Bridge(str(tmp_path), server.uri)
    with running(bridge, server):
        bridge.start()
        load = LoadGenerator(bridge.grpc, runs=100, scalars=500)
        load.send()
        store = MlflowStore(server.uri)
        finished = wait_until(lambda: len(finished_runs(store)) == 100 and finished_runs(store), 300,
                              "every run to be FINISHED")
        for run_id in load.run_ids:
            assert store.metric_points(finished[run_id]) == load.expected(run_id), run_id
        log = bridge.read_log()
        assert "unavailable" not in log and "could not end" not in log, log
