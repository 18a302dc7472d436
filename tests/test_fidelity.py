"""The TensorBoard event files are the truth: every scalar in them reaches MLflow exactly once, with its step
and wall time, and params and payload artifacts are there too. Real training loop, real MLflow."""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import numpy as np
import pytest
import tensorboardX
import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import MlflowStore, comparable, event_files, scalars_in


def train_and_log(root: str) -> None:
    """A small regression model, logged through three writers of two libraries, with awkward values."""
    early = SummaryWriter(root)  # created before start_logging: captured all the same
    tracelet_otel.start_logging("fidelity", "tracelet-tests", config={"tensorboard_log_dir": root})
    validation = SummaryWriter(os.path.join(root, "validation"))
    extra = tensorboardX.SummaryWriter(os.path.join(root, "tbx"))

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(64, 4), torch.randn(64, 1)
    for step in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        early.add_scalar("Loss/Train/CrossEntropy", loss.detach(), step)  # a 0-d tensor
        early.add_scalar("Metrics/Accuracy/Train", np.float32(1 / (step + 1)), step)  # a numpy scalar
        validation.add_scalar("loss", loss.item() * 1.1, step)
        extra.add_scalar("loss", np.float64(loss.item() * 0.9), step)
        early.add_scalars("lr", {"base": 0.1, "scaled": 0.1 * step}, step)
        extra.add_scalars("grad", {"norm": float(model.weight.grad.norm())}, step)
        if step % 10 == 0:
            early.add_histogram("Weights/Layer1", model.weight, step)
            early.add_image("Predictions", torch.rand(3, 8, 8), step)
            early.add_text("Notes", f"step {step}: loss {loss.item():.3f}", step)
    early.add_scalar("odd/nan", float("nan"), 100)
    early.add_scalar("odd/inf", float("inf"), 101)
    early.add_scalar("odd/int", 7, 102)
    early.add_scalar("odd/out_of_order", 1.0, 50)
    early.add_scalar("odd/out_of_order", 2.0, 10)
    early.add_scalar("odd/out_of_order", 3.0, 10)
    early.add_hparams({"lr": 0.1, "optimizer": "sgd", "batch": 64}, {"hparam/loss": loss.item()})
    extra.add_hparams({"dropout": 0.5}, {"hparam/tbx_loss": 0.25})
    for writer in (early, validation, extra):
        writer.close()


def expected_key(root: str, path: str, tag: str) -> str:
    """The documented names: the root verbatim, other writers by relative logdir, add_scalars as group/key,
    add_hparams metrics in the namespace of the writer they were called on."""
    relative = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "/")
    parts = [] if relative == "." else relative.split("/")
    if parts and parts[-1].startswith(("lr_",)):  # torch add_scalars: <logdir>/<main>_<key>
        return "/".join([*parts[:-1], tag, parts[-1][len(tag) + 1:]])
    if len(parts) >= 2 and parts[-2] == "grad":  # tensorboardX add_scalars: <logdir>/<main>/<key>
        return "/".join([*parts[:-2], tag, parts[-1]])
    if parts and parts[-1].replace(".", "").isdigit():  # add_hparams: <logdir>/<time.time()>
        parts = parts[:-1]
    return "/".join([*parts, tag])


def expected_points(root: str) -> Counter[tuple[str, int, object, int]]:
    points: Counter[tuple[str, int, object, int]] = Counter()
    for path in event_files(root):
        for tag, step, value, wall_time in scalars_in(path):
            points[expected_key(root, path, tag), step, comparable(value), int(wall_time * 1000)] += 1
    return points


@pytest.fixture(params=["local store", "mlflow server"])
def store(request, mlflow_store, monkeypatch) -> MlflowStore:
    if request.param == "local store":
        return mlflow_store
    server = request.getfixturevalue("mlflow_server")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
    return MlflowStore(server.uri)


def test_every_scalar_in_the_event_files_reaches_mlflow_exactly_once(store, tmp_path):
    root = str(tmp_path / "runs")
    train_and_log(root)
    run = tracelet_otel.stop_logging()

    expected = expected_points(root)
    stored = store.metric_points(run.backends["mlflow"].run_id)
    assert sum(expected.values()) == 30 * 7 + 6 + 2
    assert stored == expected
    assert run.delivery["mlflow"]["undelivered"] == 0


def test_names_follow_the_writers_and_the_seed_hierarchy(store, tmp_path):
    train_and_log(str(tmp_path / "runs"))
    run = tracelet_otel.stop_logging()

    keys = set(store.run(run.backends["mlflow"].run_id).data.metrics)
    assert {"Loss/Train/CrossEntropy", "Metrics/Accuracy/Train", "validation/loss", "tbx/loss", "lr/base",
            "lr/scaled", "tbx/grad/norm", "hparam/loss", "tbx/hparam/tbx_loss"} <= keys


def test_run_lands_in_the_project_experiment_named_after_exp_name_and_finished(store, tmp_path):
    train_and_log(str(tmp_path / "runs"))
    run = tracelet_otel.stop_logging()

    mlflow_run = store.run(run.backends["mlflow"].run_id)
    experiment = store.client.get_experiment(mlflow_run.info.experiment_id)
    assert (experiment.name, mlflow_run.info.run_name, mlflow_run.info.status) == (
        "tracelet-tests", "fidelity", "FINISHED")
    assert mlflow_run.data.tags["tracelet.run_id"] == run.run_id


def test_hparams_become_params_and_payloads_become_artifacts(store, tmp_path):
    train_and_log(str(tmp_path / "runs"))
    run = tracelet_otel.stop_logging()
    run_id = run.backends["mlflow"].run_id

    assert store.run(run_id).data.params == {"lr": "0.1", "optimizer": "sgd", "batch": "64", "dropout": "0.5"}
    artifacts = store.artifacts(run_id)
    for step in (0, 10, 20):
        assert f"images/Predictions/step_{step}.png" in artifacts
        assert f"text/Notes/step_{step}.txt" in artifacts
        assert f"histograms/Weights/Layer1/step_{step}.json" in artifacts
    histogram = json.loads(store.read_artifact(run_id, "histograms/Weights/Layer1/step_0.json"))
    assert histogram["num"] == 4 and len(histogram["bucket"]) == len(histogram["bucket_limit"])
    assert store.read_artifact(run_id, "text/Notes/step_10.txt").startswith(b"step 10: loss ")
    assert store.read_artifact(run_id, "images/Predictions/step_0.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(histogram["sum"])
