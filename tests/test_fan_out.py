"""One run to MLflow, W&B and ClearML at once: conversion happens once, each backend has its own spool and
worker, one that is down delays nothing for the others, and a histogram has the same bars in each. W&B and
ClearML run offline and are read back from their own files; MLflow is a real server that is SIGKILLed for a
while."""

from __future__ import annotations

import json
import os
import time

import pytest
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.conftest import MlflowServer
from tests.support import MlflowStore, event_files, events
from tracelet_otel.delivery import Spool
from tracelet_otel.payloads import Histogram
from tracelet_otel_clearml.testing import read_session, session_folders
from tracelet_otel_wandb.testing import read_run, run_directories

STEPS_PER_PHASE = 300


def spooled_and_undelivered(run: tracelet_otel.Run, backend: str) -> tuple[int, int]:
    spool = Spool(os.path.join(run.directory, f"{backend}.spool.sqlite"))
    try:
        return spool.total(), spool.count()
    finally:
        spool.close()


def test_a_tracker_that_is_down_delays_nothing_for_the_others(offline_trackers, tmp_path, postgres):
    server = MlflowServer(str(tmp_path), postgres.mlflow_database())
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


def histograms_in(path: str) -> dict[str, Histogram]:
    """The histograms of one event file, as tracelet-otel stores their payload."""
    found = {}
    for event in events(path):
        for value in event.summary.value:
            if value.WhichOneof("value") == "histo":
                histo = value.histo
                found[value.tag] = Histogram.from_json({
                    "min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum,
                    "sum_squares": histo.sum_squares, "bucket_limit": list(histo.bucket_limit),
                    "bucket": list(histo.bucket)})
    return found


def test_one_histogram_has_the_same_bars_in_wandb_and_clearml_as_in_tensorboards_view(
        offline_trackers, mlflow_store, tmp_path):
    import torch

    tracelet_otel.start_logging("histograms", "tracelet-tests", backend=["mlflow", "wandb", "clearml"])
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_histogram("weights", torch.randn(2000, generator=torch.Generator().manual_seed(0)), 0)
        writer.add_histogram_raw("raw", min=0.5, max=2.5, num=4, sum=5.0, sum_squares=8.0, bucket_limits=[1, 2, 3],
                                 bucket_counts=[1, 2, 1], global_step=1)
    run = tracelet_otel.stop_logging()
    (event_file,) = event_files(str(tmp_path / "runs"))
    expected = {tag: histogram.bars() for tag, histogram in histograms_in(event_file).items()}
    assert sorted(expected) == ["raw", "weights"]

    (wandb_directory,) = run_directories(str(tmp_path / "wandb"), run.backends["wandb"].run_id)
    in_wandb = {key: (value["bins"], value["values"]) for row in read_run(wandb_directory).history
                for key, value in row.items() if isinstance(value, dict) and value.get("_type") == "histogram"}
    (session,) = session_folders(tmp_path / "clearml-cache")
    in_clearml = {series: plot["data"][0] for _, series, _, plot in read_session(session).plots}
    for tag, bars in expected.items():
        assert len(bars.counts) == 30
        assert in_wandb[tag] == (pytest.approx(bars.edges), pytest.approx(bars.counts))
        assert (in_clearml[tag]["x"], in_clearml[tag]["y"]) == (pytest.approx(bars.centres), pytest.approx(bars.counts))
    # TensorBoard's raw buckets stay in MLflow, losslessly, beside the picture of the same bars.
    stored = json.loads(mlflow_store.read_artifact(run.backends["mlflow"].run_id, "histograms/raw/step_1.json"))
    assert (stored["bucket_limit"], stored["bucket"]) == ([1, 2, 3], [1, 2, 1])
