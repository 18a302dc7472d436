"""Restarted jobs: with a ``run_id`` of the user's, a job killed and started again (a preempted SLURM job, a spot
instance, a torchrun restart) continues its run in every tracker, delivers first what the killed attempt left,
and ends as one run per tracker holding every point TensorBoard shows after its ``purge_step``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import ProcessGroup, read_until
from tracelet_otel.capture._capture import DRAIN_INTERVAL_S
from tracelet_otel_clearml import ClearmlRun
from tracelet_otel_clearml.testing import read_session, session_folders
from tracelet_otel_wandb import WandbRun
from tracelet_otel_wandb.testing import read_run, run_directories

RUN_ID = "job-4242"
KILLED_AT, CHECKPOINT, LAST = 1000, 600, 1500
WANDB_BATCH, CLEARML_BATCH = WandbRun.max_batch, ClearmlRun.max_batch

TRAIN = textwrap.dedent("""
    import sys, time
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    attempt, first, last = (int(argument) for argument in sys.argv[1:4])
    # The run id comes from TRACELET_RUN_ID, as a scheduler's job id would.
    tracelet_otel.start_logging("restarted", "tracelet-tests", backend=["mlflow", "wandb", "clearml"])
    writer = SummaryWriter("runs", purge_step=first if first else None)
    writer.add_hparams({"lr": 0.1, "batch_size": 32}, {"hparam/accuracy": 0.5})  # the same again after a restart
    for step in range(first, last):
        writer.add_scalar("loss", step * 10 + attempt, step)
    writer.flush()
    if sys.argv[4] == "killed":
        print("LOGGED", flush=True)
        time.sleep(600)
    writer.close()
    tracelet_otel.stop_logging()
    print("STOPPED", flush=True)
""")


def points(attempt: int, first: int, last: int) -> list[tuple[int, float]]:
    return [(step, float(step * 10 + attempt)) for step in range(first, last)]


def assert_every_point_once_but_one_batch_of_the_killed_attempt(stored: Counter, expected: Counter,
                                                                batch: int) -> None:
    """W&B and ClearML have no transactions: the batch being written when the job was SIGKILLed may be in the
    run already and is sent again whole (docs/semantic-conventions.md). Every point is there; a point twice is
    only ever one of that batch, from the killed attempt."""
    assert set(stored) == set(expected)
    again = stored - expected
    assert sum(again.values()) <= batch and all(value == step * 10 + 1 for step, value in again)


def what_tensorboard_shows(logdir: str) -> list[tuple[int, float]]:
    """TensorBoard's own reading of the logdir, with what a restart's purge_step hides purged."""
    accumulator = EventAccumulator(logdir, size_guidance={"scalars": 0})
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars("loss")]


def test_a_killed_job_restarted_with_its_run_id_and_purge_step_ends_as_one_run_per_tracker(
        offline_trackers, mlflow_store, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    environment = {**os.environ, "TRACELET_RUN_ID": RUN_ID}
    with ProcessGroup([sys.executable, "train.py", "1", "0", str(KILLED_AT), "killed"], cwd=tmp_path,
                      env=environment) as first_attempt:
        read_until(first_attempt, "LOGGED")
        time.sleep(10 * DRAIN_INTERVAL_S)  # past what a SIGKILL may take from the journal (docs/durability.md)
    # Left the group: the whole job was SIGKILLed, its helpers with it, with some of its values not delivered.
    with ProcessGroup([sys.executable, "train.py", "2", str(CHECKPOINT), str(LAST), "stops"], cwd=tmp_path,
                      env=environment) as second_attempt:
        status, output = second_attempt.wait(300)
    assert status == 0, output
    assert output.count("restarts at step 600 (purge_step)") == 1
    assert "param" not in output  # the same params again are no change

    shown = what_tensorboard_shows(str(tmp_path / "runs"))
    assert shown == points(1, 0, CHECKPOINT) + points(2, CHECKPOINT, LAST)
    # What the trackers keep of the killed attempt past the checkpoint: TensorBoard hides it.
    hidden = points(1, CHECKPOINT, KILLED_AT)
    everything_once = Counter(shown + hidden)

    (mlflow_run,) = mlflow_store.client.search_runs(
        [mlflow_store.client.get_experiment_by_name("tracelet-tests").experiment_id])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.params == {"lr": "0.1", "batch_size": "32"}
    assert Counter((step, value) for key, step, value, _ in mlflow_store.metric_points(mlflow_run.info.run_id)
                   if key == "loss") == everything_once

    # W&B offline: one directory per attempt, all with the run id, which `wandb sync` uploads as one run.
    directories = run_directories(str(tmp_path / "wandb"), RUN_ID)
    assert len(directories) == 2
    in_wandb = Counter((row["global_step"], row["loss"]) for directory in directories
                       for row in read_run(directory).history if "loss" in row)
    assert_every_point_once_but_one_batch_of_the_killed_attempt(in_wandb, everything_once, WANDB_BATCH)

    # ClearML: one session, continued; its server keeps the latest value of each iteration (events are keyed by
    # task, metric, variant and iteration), which is what TensorBoard shows.
    (session,) = session_folders(tmp_path / "clearml-cache")
    reported = read_session(session).scalars
    in_clearml = Counter((iteration, value) for (title, _, iteration, value), count in reported.items()
                         for _ in range(count) if title == "loss")
    assert_every_point_once_but_one_batch_of_the_killed_attempt(in_clearml, everything_once, CLEARML_BATCH)
    latest = {iteration: value for (title, _, iteration, value) in sorted(reported, key=lambda key: key[3])
              if title == "loss"}  # the second attempt's values are the greater
    assert sorted(latest.items()) == shown


BUSY = textwrap.dedent("""
    import sys
    import tracelet_otel

    tracelet_otel.start_logging("busy")
    print("STARTED", flush=True)
    sys.stdin.readline()
""")


def test_a_run_id_another_process_is_running_cannot_be_started(mlflow_store, tmp_path):
    (tmp_path / "busy.py").write_text(BUSY)
    with ProcessGroup([sys.executable, "busy.py"], cwd=tmp_path, stdin=subprocess.PIPE,
                      env={**os.environ, "TRACELET_RUN_ID": RUN_ID}) as running:
        read_until(running, "STARTED")
        with pytest.raises(tracelet_otel.RunNotStarted, match="another process is running it"):
            tracelet_otel.start_logging("second", config={"run_id": RUN_ID})


def test_a_job_started_again_after_its_spool_is_gone_continues_its_run_in_every_tracker(
        offline_trackers, mlflow_store, tmp_path):
    # The first attempt delivered everything, so its run folder is gone, as it is for a job that moved machine.
    for attempt, steps in ((1, range(0, 100)), (2, range(100, 200))):
        tracelet_otel.start_logging("moved", "tracelet-tests", backend=["mlflow", "wandb", "clearml"],
                                    config={"run_id": RUN_ID})
        with SummaryWriter(str(tmp_path / "runs")) as writer:
            for step in steps:
                writer.add_scalar("loss", step * 10 + attempt, step)
        stopped = tracelet_otel.stop_logging()
        assert not os.path.exists(stopped.directory)

    everything = Counter(points(1, 0, 100) + points(2, 100, 200))
    (mlflow_run,) = mlflow_store.client.search_runs(
        [mlflow_store.client.get_experiment_by_name("tracelet-tests").experiment_id])
    assert Counter((step, value) for key, step, value, _ in mlflow_store.metric_points(mlflow_run.info.run_id)
                   if key == "loss") == everything
    directories = run_directories(str(tmp_path / "wandb"), RUN_ID)
    assert Counter((row["global_step"], row["loss"]) for directory in directories
                   for row in read_run(directory).history if "loss" in row) == everything
    (session,) = session_folders(tmp_path / "clearml-cache")
    assert Counter((iteration, value) for (title, _, iteration, value), count in read_session(session).scalars.items()
                   for _ in range(count) if title == "loss") == everything
