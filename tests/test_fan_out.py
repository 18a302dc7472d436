"""One run to MLflow, W&B and ClearML at once: conversion happens once, each backend has its own spool and
worker, and one that is down delays nothing for the others. W&B and ClearML run offline and are read back
from their own files; MLflow is a real server that is SIGKILLed for a while."""

from __future__ import annotations

import os
import time

import pytest
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.conftest import MlflowServer
from tests.support import MlflowStore
from tracelet_otel.delivery import Spool
from tracelet_otel_clearml.offline import read_session, session_folders
from tracelet_otel_wandb import read_run, run_directories

STEPS_PER_PHASE = 300


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    configuration = tmp_path / "clearml.conf"
    configuration.write_text("")
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml-cache"))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(configuration))
    yield
    import wandb

    wandb.teardown()  # W&B reads WANDB_* once per process


def spooled_and_undelivered(run: tracelet_otel.Run, backend: str) -> tuple[int, int]:
    spool = Spool(os.path.join(run.directory, f"{backend}.spool.sqlite"))
    try:
        return spool.total(), spool.count()
    finally:
        spool.close()


def test_a_tracker_that_is_down_delays_nothing_for_the_others(offline_trackers, tmp_path):
    server = MlflowServer(str(tmp_path))
    server.start()
    try:
        run = tracelet_otel.start_logging("fan-out", "tracelet-tests", backend=["mlflow", "wandb", "clearml"],
                                          config={"mlflow_tracking_uri": server.uri, "stop_timeout": 180})
        writer = SummaryWriter(str(tmp_path / "runs"))
        for step in range(STEPS_PER_PHASE):
            writer.add_scalar("loss", step, step)
        time.sleep(2)
        server.kill()
        for step in range(STEPS_PER_PHASE, 2 * STEPS_PER_PHASE):
            writer.add_scalar("loss", step, step)

        both_delivered = [(2 * STEPS_PER_PHASE, 0)] * 2
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and [spooled_and_undelivered(run, name)
                                               for name in ("wandb", "clearml")] != both_delivered:
            time.sleep(0.2)
        # While MLflow is down, W&B and ClearML have everything.
        assert [spooled_and_undelivered(run, name) for name in ("wandb", "clearml")] == both_delivered
        assert spooled_and_undelivered(run, "mlflow")[1] > 0

        server.start()
        for step in range(2 * STEPS_PER_PHASE, 3 * STEPS_PER_PHASE):
            writer.add_scalar("loss", step, step)
        writer.close()
        stopped = tracelet_otel.stop_logging()
        assert {name: counters["undelivered"] for name, counters in stopped.delivery.items()} == {
            "mlflow": 0, "wandb": 0, "clearml": 0}

        everything = list(range(3 * STEPS_PER_PHASE))
        mlflow = MlflowStore(server.uri)
        assert sorted(m.step for m in mlflow.client.get_metric_history(run.backends["mlflow"].run_id, "loss")) == (
            everything)
        (wandb_directory,) = run_directories(str(tmp_path / "wandb"), run.backends["wandb"].run_id)
        rows = read_run(wandb_directory).history
        assert sorted(row["global_step"] for row in rows if "loss" in row) == everything
        (session,) = session_folders(tmp_path / "clearml-cache")
        assert sorted(iteration for (title, _, iteration, _) in read_session(session).scalars
                      if title == "loss") == everything
    finally:
        server.stop()
