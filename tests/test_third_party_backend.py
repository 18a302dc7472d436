"""A backend from another package (examples/third_party_backend, installed by scripts/setup as a user installs
one), found through its entry point: fan-out beside MLflow, and no empty run left behind when it cannot open its
run. Its own tests run the contract suite."""

from __future__ import annotations

import json
import os

import pytest
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel


def lines(directory) -> list[dict]:
    (path,) = [os.path.join(directory, name) for name in os.listdir(directory)]
    with open(path) as file:
        return [json.loads(line) for line in file]


def test_a_third_party_backend_receives_everything_beside_mlflow(mlflow_store, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    run = tracelet_otel.start_logging("fan-out", "tracelet-tests", backend=["mlflow", "jsonl"],
                                      config={"jsonl_directory": str(logs)})
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        for step in range(300):
            writer.add_scalar("loss", 1 / (step + 1), step)
        writer.add_text("notes", "hello", 0)
    stopped = tracelet_otel.stop_logging()

    assert {name: counters["undelivered"] for name, counters in stopped.delivery.items()} == {"mlflow": 0, "jsonl": 0}
    written = lines(logs)
    assert sorted(line["step"] for line in written if line.get("tag") == "loss") == list(range(300))
    assert next(line for line in written if line.get("kind") == "text")["payload"]
    assert written[-1] == {"status": "FINISHED"}
    assert len(mlflow_store.client.get_metric_history(run.backends["mlflow"].run_id, "loss")) == 300


def test_when_one_backend_cannot_open_its_run_the_others_leave_no_empty_run(mlflow_store, tmp_path):
    with pytest.raises(RuntimeError, match="could not open the jsonl run"):
        tracelet_otel.start_logging("half-open", "tracelet-tests", backend=["mlflow", "jsonl"],
                                    config={"jsonl_directory": str(tmp_path / "no" / "such" / "directory")})
    experiment = mlflow_store.client.get_experiment_by_name("tracelet-tests")
    assert mlflow_store.client.search_runs([experiment.experiment_id]) == []
    assert os.listdir(".tracelet/runs") == []
