"""The demo's run as its user sees it in MLflow: its images and pictures of its histograms in MLflow's image view,
listed by MLflow's own client and shown by MLflow's own UI in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.conftest import MlflowServer
from tests.support import MlflowStore, event_files, events
from tracelet_otel_mlflow.testing import logged_images

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_STEPS = list(range(0, 200, 20))  # the demo logs its image and histogram every 20 steps
IMAGE_KEY = "train/Weights/Layer1/Image"
HISTOGRAM_KEY = "histograms/train/Weights/Layer1"
CHROMIUM = shutil.which("chromium")


@dataclass(frozen=True)
class DemoRun:
    directory: str
    store: MlflowStore
    run_id: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRun:
    """``./scripts/demo`` in a directory of its own, into the sqlite store an ``MlflowServer`` there serves."""
    directory = str(tmp_path_factory.mktemp("demo"))
    uri = f"sqlite:///{directory}/server.db"
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("TRACELET_", "MLFLOW_", "OTEL_"))}
    subprocess.run([sys.executable, os.path.join(REPOSITORY, "examples", "demo.py")], cwd=directory, check=True,
                   env={**environment, "MLFLOW_TRACKING_URI": uri}, capture_output=True, timeout=300)
    store = MlflowStore(uri)
    (run,) = store.client.search_runs([store.client.get_experiment_by_name("tracelet-otel-demo").experiment_id])
    return DemoRun(directory, store, run.info.run_id)


def tensorboard_histograms(logdir: str) -> dict[int, dict]:
    """The demo's histograms as TensorBoard's event files hold them, by step."""
    found = {}
    for path in event_files(logdir):
        for event in events(path):
            for value in event.summary.value:
                if value.WhichOneof("value") == "histo":
                    histo = value.histo
                    found[event.step] = {"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum,
                                         "sum_squares": histo.sum_squares, "bucket_limit": list(histo.bucket_limit),
                                         "bucket": list(histo.bucket)}
    return found


def test_the_demos_images_and_histograms_are_in_mlflows_image_view_with_tensorboards_steps(demo):
    images = logged_images(demo.store.client, demo.run_id)
    assert sorted((image.key, image.step) for image in images) == sorted(
        [(IMAGE_KEY, step) for step in DEMO_STEPS] + [(HISTOGRAM_KEY, step) for step in DEMO_STEPS])
    assert all(image.thumbnail_path for image in images)

    histograms = tensorboard_histograms(os.path.join(demo.directory, "runs", "demo", "train"))
    assert sorted(histograms) == DEMO_STEPS
    for step, expected in histograms.items():
        stored = json.loads(demo.store.read_artifact(demo.run_id, f"histograms/train/Weights/Layer1/step_{step}.json"))
        assert stored == expected


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium on PATH (apt-get install chromium)")
def test_mlflows_ui_shows_the_demos_image_chart_on_the_runs_metrics_page(demo):
    server = MlflowServer(demo.directory)  # serves the store the demo logged into
    server.start()
    try:
        experiment_id = demo.store.run(demo.run_id).info.experiment_id
        page = f"{server.uri}/#/experiments/{experiment_id}/runs/{demo.run_id}/model-metrics"
        # MLflow's charts load lazily, as they scroll into view: a tall window shows them all.
        dom = ""
        for _ in range(3):  # the page renders within the virtual time budget nearly always; a retry covers the rest
            dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                                  "--run-all-compositor-stages-before-draw", "--window-size=1400,6000",
                                  "--virtual-time-budget=30000", page],
                                 capture_output=True, text=True, timeout=120).stdout
            if "images%2Ftrain~Weights~Layer1~Image%2Bstep%2B" in dom:
                break
    finally:
        server.stop()
    assert f'title="{IMAGE_KEY}"' in dom  # the chart of the demo's image tag
    assert "images%2Ftrain~Weights~Layer1~Image%2Bstep%2B" in dom  # showing one of its images
    assert f'title="{HISTOGRAM_KEY}"' in dom
