"""The TensorBoard event files are the truth: every scalar in them reaches MLflow exactly once, with its step
and wall time, and params and payload artifacts are there too. Real training loop, real MLflow."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import NamedTuple

import pytest

import tracelet_otel
from tests.support import (
    MlflowStore,
    comparable,
    event_files,
    expected_key,
    fresh_mlflow_store,
    isolated_directory,
    log_fidelity_scenario,
    scalars_in,
)


def train_and_log(root: str) -> None:
    log_fidelity_scenario(root, lambda: tracelet_otel.start_logging(
        "fidelity", "tracelet-tests", config={"tensorboard_log_dir": root}))


def expected_points(root: str) -> Counter[tuple[str, int, object, int]]:
    points: Counter[tuple[str, int, object, int]] = Counter()
    for path in event_files(root):
        for tag, step, value, wall_time in scalars_in(path):
            points[expected_key(root, path, tag), step, comparable(value), int(wall_time * 1000)] += 1
    return points


class Logged(NamedTuple):
    root: str
    run: tracelet_otel.Run
    store: MlflowStore


@pytest.fixture(scope="module", params=["local store", "mlflow server"])
def logged(request, tmp_path_factory, mlflow_template) -> Logged:
    """The scenario, logged once per store; every test of the module reads the same run."""
    directory = tmp_path_factory.mktemp("fidelity")
    with pytest.MonkeyPatch.context() as monkeypatch, isolated_directory(directory, monkeypatch):
        if request.param == "local store":
            uri = fresh_mlflow_store(mlflow_template, directory)
        else:
            uri = request.getfixturevalue("mlflow_server").uri
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        root = str(directory / "runs")
        train_and_log(root)
        run = tracelet_otel.stop_logging()
    assert run is not None
    return Logged(root, run, MlflowStore(uri))


def test_every_scalar_in_the_event_files_reaches_mlflow_exactly_once(logged):
    root, run, store = logged

    expected = expected_points(root)
    stored = store.metric_points(run.backends["mlflow"].run_id)
    assert sum(expected.values()) == 30 * 7 + 6 + 2
    assert stored == expected
    assert run.delivery["mlflow"]["undelivered"] == 0


def test_names_follow_the_writers_and_the_seed_hierarchy(logged):
    _, run, store = logged

    keys = set(store.run(run.backends["mlflow"].run_id).data.metrics)
    assert {"Loss/Train/CrossEntropy", "Metrics/Accuracy/Train", "validation/loss", "tbx/loss", "lr/base",
            "lr/scaled", "tbx/grad/norm", "hparam/loss", "tbx/hparam/tbx_loss"} <= keys


def test_run_lands_in_the_project_experiment_named_after_exp_name_and_finished(logged):
    _, run, store = logged

    mlflow_run = store.run(run.backends["mlflow"].run_id)
    experiment = store.client.get_experiment(mlflow_run.info.experiment_id)
    assert (experiment.name, mlflow_run.info.run_name, mlflow_run.info.status) == (
        "tracelet-tests", "fidelity", "FINISHED")
    assert mlflow_run.data.tags["tracelet.run_id"] == run.run_id


def test_hparams_become_params_and_payloads_become_artifacts(logged):
    _, run, store = logged
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
