"""A backend from another package, found through the entry point (examples/third_party_backend): fan-out
beside MLflow, its own delivery contract, and no empty run left behind when it cannot open its run."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from examples.third_party_backend.jsonl_backend import translate
from tracelet_otel.records import Record, RecordKind

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "third_party_backend", "jsonl_backend.py")


@pytest.fixture
def jsonl_installed(tmp_path, monkeypatch):
    """The example, installed the way pip installs a package: the module and a dist-info with the entry point."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE, site / "jsonl_backend.py")
    dist_info = site / "jsonl_backend-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: jsonl-backend\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[tracelet_otel_backends]\njsonl = jsonl_backend:JsonLinesBackend\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return site


def lines(directory) -> list[dict]:
    (path,) = [os.path.join(directory, name) for name in os.listdir(directory)]
    with open(path) as file:
        return [json.loads(line) for line in file]


def test_the_example_translation_is_pure():
    record = Record(RecordKind.SCALAR, "loss", 3, 1.5, value=0.25)
    assert translate([record]) == [{"kind": "scalar", "tag": "loss", "step": 3, "wall_time": 1.5, "value": 0.25,
                                    "payload": None, "params": None}]


def test_a_third_party_backend_receives_everything_beside_mlflow(jsonl_installed, mlflow_store, tmp_path):
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


def test_when_one_backend_cannot_open_its_run_the_others_leave_no_empty_run(jsonl_installed, mlflow_store, tmp_path):
    with pytest.raises(RuntimeError, match="could not open the jsonl run"):
        tracelet_otel.start_logging("half-open", "tracelet-tests", backend=["mlflow", "jsonl"],
                                    config={"jsonl_directory": str(tmp_path / "no" / "such" / "directory")})
    experiment = mlflow_store.client.get_experiment_by_name("tracelet-tests")
    assert mlflow_store.client.search_runs([experiment.experiment_id]) == []
    assert os.listdir(".tracelet/runs") == []
