"""The TensorBoard event files are the truth: every scalar in them reaches MLflow exactly once, with its step
and wall time, and params and payload artifacts are there too. Real training loop, real MLflow."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

import tracelet_otel
from tests.support import MlflowStore, comparable, event_files, expected_key, log_fidelity_scenario, scalars_in


def train_and_log(root: str) -> None:
    log_fidelity_scenario(root, lambda: tracelet_otel.start_logging(
        "fidelity", "tracelet-tests", config={"tensorboard_log_dir": root}))


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
