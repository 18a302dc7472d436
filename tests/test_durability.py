"""Trackers fail and processes die; values are not lost and not doubled. Real servers, real SIGKILLs."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.conftest import MlflowServer
from tests.support import MlflowStore, replay
from tracelet_otel.agent import Agent
from tracelet_otel.delivery import Spool

TRAINING = textwrap.dedent("""
    import sys, time
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    tracelet_otel.start_logging("killed", "durability", config={"mlflow_tracking_uri": sys.argv[1]})
    writer = SummaryWriter("runs/killed")
    for step in range(int(sys.argv[2])):
        writer.add_scalar("loss", step / 1000, step)
    writer.flush()
    time.sleep(0.5)  # the capture thread journals every 50 ms
    print("LOGGED", flush=True)
    if int(sys.argv[3]) > int(sys.argv[2]):
        sys.stdin.readline()
        for step in range(int(sys.argv[2]), int(sys.argv[3])):
            writer.add_scalar("loss", step / 1000, step)
        writer.flush()
        time.sleep(0.5)
        print("LOGGED", flush=True)
    time.sleep(3600)
""")


@pytest.fixture
def server(tmp_path, postgres):
    server = MlflowServer(str(tmp_path), postgres.mlflow_database())
    server.start()
    yield server
    server.stop()


def start_training(tmp_path, uri: str, first: int, last: int) -> subprocess.Popen[str]:
    (tmp_path / "train.py").write_text(TRAINING)
    process = subprocess.Popen([sys.executable, "train.py", uri, str(first), str(last)], cwd=tmp_path,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline() == "LOGGED\n"
    return process


def the_run(store: MlflowStore):
    (run,) = store.client.search_runs([store.client.get_experiment_by_name("durability").experiment_id])
    return run


def wait_for_status(store: MlflowStore, status: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if the_run(store).info.status == status:
            return
        time.sleep(0.5)
    raise AssertionError(f"run not {status}: {the_run(store).info.status}")


def steps(store: MlflowStore) -> list[int]:
    return sorted(metric.step for metric in store.client.get_metric_history(the_run(store).info.run_id, "loss"))


def test_when_training_is_killed_the_agent_delivers_what_was_journaled_and_ends_the_run_killed(mlflow_store, tmp_path):
    process = start_training(tmp_path, mlflow_store.uri, 500, 500)
    process.kill()
    process.wait()

    wait_for_status(mlflow_store, "KILLED")
    assert steps(mlflow_store) == list(range(500))
    assert "nothing to replay" in replay(tmp_path).stderr
    assert steps(mlflow_store) == list(range(500))


def test_after_a_hard_kill_of_everything_replay_delivers_into_the_same_run_exactly_once(server, tmp_path, caplog):
    store = MlflowStore(server.uri)
    process = start_training(tmp_path, server.uri, 200, 260)
    server.kill()  # what follows can only be journaled and spooled
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.stdout.readline() == "LOGGED\n"
    os.killpg(process.pid, signal.SIGKILL)  # training, agent and delivery worker: a preempted job
    process.wait()
    server.start()
    run_id = the_run(store).info.run_id

    with caplog.at_level(logging.WARNING, logger="tracelet_otel"):  # the next run here offers the replay
        tracelet_otel.start_logging("next", "elsewhere", config={"mlflow_tracking_uri": server.uri})
        tracelet_otel.stop_logging()
    assert "earlier run(s) in" in caplog.text and "tracelet-otel replay" in caplog.text

    result = replay(tmp_path)
    assert result.returncode == 0, result.stderr
    assert the_run(store).info.run_id == run_id
    assert steps(store) == list(range(260))
    assert the_run(store).info.status == "KILLED"
    assert "nothing to replay" in replay(tmp_path).stderr


def test_an_mlflow_server_outage_loses_nothing_and_reports_the_longest_add_scalar(server, tmp_path, record_property):
    """Speed lives in benchmarks: the longest call is reported (``-s`` or the JUnit property), not asserted."""
    store = MlflowStore(server.uri)
    run = tracelet_otel.start_logging("outage", "durability",
                                      config={"mlflow_tracking_uri": server.uri, "stop_timeout": 180})
    writer = SummaryWriter(str(tmp_path / "runs"))
    longest = {}
    step = 0
    for phase in ("before", "during", "after"):
        if phase == "during":
            server.kill()
        if phase == "after":
            server.start()
        slowest = 0.0
        for _ in range(300):
            started = time.perf_counter()
            writer.add_scalar("loss", step / 1000, step)
            slowest = max(slowest, time.perf_counter() - started)
            step += 1
        longest[phase] = slowest
        time.sleep(2)  # let delivery try while the server is in this state
    writer.close()
    stopped = tracelet_otel.stop_logging()

    record_property("longest_add_scalar_during_outage_ms", longest["during"] * 1000)
    print(f"longest add_scalar during the outage: {longest['during'] * 1000:.2f} ms")
    assert steps(store) == list(range(900))
    assert stopped.delivery["mlflow"]["retried"] > 0
    assert stopped.delivery["mlflow"]["undelivered"] == 0
    assert store.run(run.backends["mlflow"].run_id).info.status == "FINISHED"


def test_a_batch_sent_again_after_a_crash_is_stored_once(mlflow_store, tmp_path):
    """A crash between MLflow accepting records and the spool recording it: replay sends them again. (Delivered
    rows leave the spool, so the resend is made the way an agent crash makes one: the journal is converted and
    spooled again from the start.)"""
    process = start_training(tmp_path, mlflow_store.uri, 300, 300)
    deadline = time.monotonic() + 60
    while steps(mlflow_store) != list(range(300)) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the delivery process has sent everything
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert steps(mlflow_store) == list(range(300))
    (spool_path,) = [os.path.join(directory, name) for directory, _, names in os.walk(tmp_path / ".tracelet")
                     for name in names if name.endswith(".spool.sqlite")]
    spool = Spool(spool_path)
    # What an agent knew before it recorded its journal position with the records: everything is spooled again.
    sqlite3.connect(spool_path, isolation_level=None).execute("DELETE FROM positions")
    spool.close()

    agent = Agent(os.path.dirname(spool_path))  # what `tracelet-otel replay` runs
    agent.follow(until_end=False)
    report = agent.finish(120)["backends"]["mlflow"]
    assert (report["spooled"], report["undelivered"]) == (600, 0)  # every record sent a second time
    assert steps(mlflow_store) == list(range(300))


def test_an_unreadable_event_in_the_journal_is_counted_and_the_rest_still_arrives(mlflow_store, tmp_path):
    """A journal a crash left behind with one corrupt event between good ones: replay delivers the good ones."""
    from tensorboard.compat.proto.event_pb2 import Event
    from torch.utils.tensorboard.summary import scalar

    from tracelet_otel.capture import journal
    from tracelet_otel.config import Options
    from tracelet_otel.layout import RunDirectory
    from tracelet_otel.runspec import RunSpec

    run_dir = RunDirectory.of(str(tmp_path / ".tracelet"), "crashed")
    os.makedirs(run_dir.path)
    RunSpec("crashed", "unreadable", "durability", ("mlflow",), Options(
        spool_dir=str(tmp_path / ".tracelet"), backend_options={"mlflow_tracking_uri": mlflow_store.uri})).save(
        run_dir.spec)
    good = [Event(summary=scalar("loss", step / 10), step=step, wall_time=1.7e9 + step).SerializeToString()
            for step in range(3)]
    with open(run_dir.journal(), "wb") as file:
        file.write(journal.encode_json(journal.FrameType.WRITER, {"id": 1, "logdir": str(tmp_path), "call": None}))
        file.write(journal.encode_event(1, good[0]))
        file.write(journal.encode_event(1, b"\xff not an event"))
        file.write(journal.encode_event(1, good[1]))
        file.write(journal.encode_event(7, good[2]))  # a writer the journal never announced

    result = replay(tmp_path)
    assert result.returncode == 0, result.stderr
    assert steps(mlflow_store) == [0, 1]
    assert "counted as dropped" in result.stderr
    assert the_run(mlflow_store).info.status == "KILLED"
