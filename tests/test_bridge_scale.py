"""The collector route at a platform team's scale: many jobs at once through one bridge into the team's MLflow on
PostgreSQL. Real processes on 127.0.0.1; the runs are sent as their jobs' ``otlp`` backends send them."""

from __future__ import annotations

import os
import signal
from collections import Counter

from tests.bridge_support import Bridge, LoadGenerator, running, wait_until
from tests.conftest import MlflowServer
from tests.support import MlflowStore, processes_below


def all_finished(store: MlflowStore, load: LoadGenerator) -> dict[str, str]:
    """Our run id -> the MLflow run id, once every run of the load is FINISHED in its project's experiment."""
    experiment = store.client.get_experiment_by_name(load.project)
    if experiment is None:
        return {}
    runs = store.client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'", max_results=1000)
    finished = {run.data.tags["tracelet.run_id"]: run.info.run_id for run in runs}
    return finished if len(finished) == len(load.run_ids) else {}


def test_a_hundred_runs_at_once_reach_mlflow_on_postgresql_every_point_once_and_no_request_times_out(
        tmp_path, mlflow_server):
    bridge = Bridge(str(tmp_path), mlflow_server.uri)
    with running(bridge):
        bridge.start()
        load = LoadGenerator(runs=100, scalars=200, prefix="hundred")
        load.send(bridge.grpc)
        store = MlflowStore(mlflow_server.uri)
        finished = wait_until(lambda: all_finished(store, load), 300, "every run to be FINISHED")
        for run_id in load.run_ids:
            assert store.metric_points(finished[run_id]) == load.expected(run_id), run_id
        log = bridge.read_log()
        assert "unavailable" not in log and "could not end" not in log, log


def replica(tmp_path, name: str, tracking_uri: str, state: str) -> Bridge:
    directory = tmp_path / name
    directory.mkdir(exist_ok=True)
    return Bridge(str(directory), tracking_uri, "--state", state)


def test_two_replicas_sharing_their_state_make_one_run_exact_when_a_run_moves_and_one_replica_is_killed(
        tmp_path, postgres, mlflow_server):
    server = mlflow_server
    state = postgres.database()
    first, second = replica(tmp_path, "bridge-0", server.uri, state), replica(tmp_path, "bridge-1", server.uri, state)
    with running(first, second):
        first.start()
        second.start()
        load = LoadGenerator(runs=4, scalars=1500, prefix="moved")
        load.send(first.grpc, through=500, end=False)
        load.send(second.grpc, start=500, through=1000, end=False)  # a rehash: the runs go on at the other
        first.kill()  # mid-run: it may hold the runs' leases and records the second one received
        restarted = replica(tmp_path, "bridge-0", server.uri, state)
        with running(restarted):
            restarted.start()
            load.send(restarted.grpc, start=1000, through=1200, end=False)  # back again
            load.send(second.grpc, start=1200)  # and the end at the other
            store = MlflowStore(server.uri)
            finished = wait_until(lambda: all_finished(store, load), 180, "every run to be FINISHED")
            for run_id in load.run_ids:
                assert store.metric_points(finished[run_id]) == load.expected(run_id), run_id
            experiment = store.client.get_experiment_by_name(load.project)
            assert len(store.client.search_runs([experiment.experiment_id])) == 4  # one MLflow run each, never two
            assert second.health()["records"]["spooled"] > 0 and restarted.health()["records"]["spooled"] > 0


def test_forty_runs_at_once_reach_wandb_offline_whole_through_one_bridge(tmp_path, offline_trackers):
    """W&B's delivery process holds many runs open at once (its service serves them all); the load benchmark
    has the figures at 100 and 500 runs."""
    from tracelet_otel_wandb.testing import read_run

    bridge = Bridge(str(tmp_path), "", backends=("wandb",))
    with running(bridge):
        bridge.start()
        load = LoadGenerator(runs=40, scalars=100)
        load.send(bridge.grpc)
        wait_until(lambda: bridge.health()["delivered"] == 40 * 100 and bridge.health()["runs_in_progress"] == 0,
                   300, "every record delivered and every run ended")
    everything = list(range(100))
    wandb_runs = {}
    directories = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(directories) == 40  # one W&B run each, opened once
    for directory in directories:
        contents = read_run(str(directory))
        wandb_runs[contents.summary["_tracelet_run_id"]] = sorted(row["global_step"] for row in contents.history
                                                                 if "loss" in row)
    assert wandb_runs == {run_id: everything for run_id in load.run_ids}


def test_clearml_runs_take_turns_in_the_bridges_delivery_processes_each_one_task_with_every_point_once(
        tmp_path, offline_trackers):
    """ClearML's SDK holds one task per process: the bridge delivers its runs from several processes, and a run
    with nothing to deliver lets its process go to one that waits, so six runs that never stop sending all move
    on through two processes; the runs of one that dies go to another."""
    from tracelet_otel_clearml.testing import read_session, session_folders

    bridge = Bridge(str(tmp_path), "", "--delivery-processes", "2", backends=("clearml",))
    with running(bridge):
        bridge.start()
        load = LoadGenerator(runs=6, scalars=400, prefix="turns")
        load.send(bridge.grpc, through=200, end=False)
        wait_until(lambda: bridge.health()["delivered"] == 6 * 200, 120, "the first half of every run delivered")
        deliverers = [pid for pid, command in processes_below(bridge.pid).items()
                      if "tracelet_otel.delivery clearml --bridge" in command]
        os.kill(deliverers[0], signal.SIGKILL)  # idle, holding a run or not
        load.send(bridge.grpc, start=200)
        wait_until(lambda: bridge.health()["delivered"] == 6 * 400 and bridge.health()["runs_in_progress"] == 0,
                   120, "every record delivered and every run ended")
    sessions = [read_session(folder) for folder in session_folders(tmp_path / "clearml-cache")]
    assert len(sessions) == 6  # one task each, reopened for its next turn, never a second task
    every_point = Counter(("loss", "loss", step, 1 / (step + 1)) for step in range(400))
    assert {session.bookkeeping["tracelet_run_id"]: session.scalars for session in sessions} == {
        run_id: every_point for run_id in load.run_ids}
    # Two at a time: before every first half was in, four runs at least let their process go, and were reopened.
    reopened = [session for session in sessions if int(session.bookkeeping["tracelet_sessions"]) > 1]
    assert len(reopened) >= 4, [session.bookkeeping for session in sessions]
    assert "delivery process exited" in bridge.read_log()


def test_a_replica_removed_by_a_scale_down_leaves_its_runs_to_the_others_even_those_that_sent_everything(
        tmp_path, postgres):
    server = MlflowServer(str(tmp_path), postgres.mlflow_database())
    server.start()
    state = postgres.database()
    leaving = replica(tmp_path, "bridge-0", server.uri, state)
    staying = replica(tmp_path, "bridge-1", server.uri, state)
    with running(leaving, staying, server):
        leaving.start()
        staying.start()
        server.kill()  # the tracker is away: the runs' records wait in the shared spools
        load = LoadGenerator(runs=3, scalars=600, prefix="orphan")
        load.send(leaving.grpc)  # everything, ends included, reached the replica that is going away
        assert leaving.terminate() == 0  # a scale-down: SIGTERM, and it never comes back
        server.start()
        store = MlflowStore(server.uri)
        finished = wait_until(lambda: all_finished(store, load), 120,
                              "the remaining replica to deliver and end the runs it never received")
        for run_id in load.run_ids:
            assert store.metric_points(finished[run_id]) == load.expected(run_id), run_id
        assert "took over 3 run(s)" in staying.read_log()
