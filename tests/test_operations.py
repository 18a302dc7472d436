"""Every SummaryWriter operation of torch and tensorboardX reaches MLflow, each exactly once."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import tensorboardX
import torch
from torch.utils import tensorboard

import tracelet_otel

LIBRARIES = {"torch": tensorboard.SummaryWriter, "tensorboardX": tensorboardX.SummaryWriter}


def every_operation(writer) -> None:
    step = 3
    writer.add_scalar("scalar", 0.5, step)
    writer.add_scalars("group", {"a": 1.0, "b": 2.0}, step)
    writer.add_histogram("histogram", np.arange(10.0), step)
    writer.add_histogram_raw("histogram_raw", min=0.0, max=9.0, num=10, sum=45.0, sum_squares=285.0,
                             bucket_limits=[3.0, 6.0, 9.0], bucket_counts=[3, 3, 4], global_step=step)
    writer.add_image("image", np.zeros((3, 4, 4)), step)
    writer.add_images("images", np.zeros((2, 3, 4, 4)), step)
    writer.add_image_with_boxes("boxes", np.zeros((3, 16, 16)), np.array([[1, 1, 8, 8]]), step)
    figure = plt.figure()
    plt.plot([1, 2, 3])
    writer.add_figure("figure", figure, step)
    writer.add_text("text", "hello", step)
    writer.add_audio("audio", np.sin(np.linspace(0, 20, 800)), step, sample_rate=8000)
    writer.add_video("video", np.zeros((1, 2, 3, 8, 8), dtype=np.uint8), step, fps=2)
    writer.add_pr_curve("pr", np.array([0, 1, 1, 0]), np.array([0.1, 0.9, 0.8, 0.3]), step)
    writer.add_pr_curve_raw("pr_raw", true_positive_counts=[4, 2], false_positive_counts=[2, 0],
                            true_negative_counts=[0, 2], false_negative_counts=[0, 2], precision=[0.67, 1.0],
                            recall=[1.0, 0.5], global_step=step, num_thresholds=2)
    writer.add_embedding(np.eye(3), metadata=["a", "b", "c"], global_step=step, tag="embedding")
    writer.add_mesh("mesh", vertices=torch.rand(1, 3, 3), faces=torch.tensor([[[0, 1, 2]]]), global_step=step)
    writer.add_custom_scalars({"Losses": {"all": ["Multiline", ["group/a", "group/b"]]}})
    writer.add_graph(torch.nn.Linear(2, 1), torch.zeros(1, 2))
    writer.add_hparams({"lr": 0.01}, {"hparam/score": 0.75})


def hparams_runs(logdir) -> list[str]:
    """The folders add_hparams made: it names them after time.time()."""
    return [path.name for path in logdir.iterdir() if path.is_dir() and "." in path.name
            and path.name.replace(".", "").isdigit()]


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_operation_arrives(library, mlflow_store, tmp_path):
    run = tracelet_otel.start_logging(f"operations-{library}")
    writer = LIBRARIES[library](str(tmp_path / "runs"))
    every_operation(writer)
    writer.close()
    run = tracelet_otel.stop_logging()
    run_id = run.backends["mlflow"].run_id

    stored = mlflow_store.metric_points(run_id)
    assert sorted((key, step, value) for key, step, value, _ in stored) == [
        ("group/a", 3, 1.0), ("group/b", 3, 2.0), ("hparam/score", 0, 0.75), ("scalar", 3, 0.5)]
    assert mlflow_store.run(run_id).data.params == {"lr": "0.01"}
    artifacts = mlflow_store.artifacts(run_id)
    for path in ("histograms/histogram/step_3.json", "histograms/histogram_raw/step_3.json",
                 "images/image/step_3.png", "images/images/step_3.png", "images/boxes/step_3.png",
                 "images/figure/step_3.png", "text/text/step_3.txt", "audio/audio/step_3.wav",
                 "videos/video/step_3.gif", "pr_curves/pr/step_3.json", "pr_curves/pr_raw/step_3.json",
                 "embeddings/embedding/step_3/tensors.tsv", "embeddings/embedding/step_3/metadata.tsv",
                 "meshes/mesh/step_3/vertex.npy", "meshes/mesh/step_3/face.npy",
                 "custom_scalars/custom_scalars__config__/step_0.json"):
        assert path in artifacts, path
    assert [path for path in artifacts if path.startswith("hparams/")] == [
        f"hparams/{hparams_run}.json" for hparams_run in hparams_runs(tmp_path / "runs")]
    assert any(path.startswith("graphs/") for path in artifacts)
    raw = json.loads(mlflow_store.read_artifact(run_id, "histograms/histogram_raw/step_3.json"))
    assert (raw["bucket_limit"], raw["bucket"]) == ([3.0, 6.0, 9.0], [3.0, 3.0, 4.0])
    pr = json.loads(mlflow_store.read_artifact(run_id, "pr_curves/pr_raw/step_3.json"))
    assert pr["true_positives"] == [4.0, 2.0]
    assert run.delivery["mlflow"]["dropped"] == {} and run.capture["dropped"] == {}


def test_an_embedding_without_a_step_arrives_at_step_0(mlflow_store, tmp_path):
    tracelet_otel.start_logging("embedding-no-step")
    with tensorboard.SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_embedding(np.eye(2), tag="nostep")
    run = tracelet_otel.stop_logging()
    assert "embeddings/nostep/step_0/tensors.tsv" in mlflow_store.artifacts(run.backends["mlflow"].run_id)
