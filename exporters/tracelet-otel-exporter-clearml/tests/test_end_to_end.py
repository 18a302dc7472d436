"""The TensorBoard event files are the truth: a real training loop logged through torch and tensorboardX reaches
an offline ClearML session through the public API, every scalar exactly once with its step, and images,
histograms, text and hparams are there too."""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np
import tensorboardX
import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import event_files, scalars_in
from tracelet_otel_clearml import title_series
from tracelet_otel_clearml.offline import read_session, session_folders

STEPS = 12


def train_and_log(root: str) -> tracelet_otel.Run:
    """A small regression model, logged through three writers of two libraries, with awkward values."""
    early = SummaryWriter(root)  # created before start_logging: captured all the same
    run = tracelet_otel.start_logging("fidelity", "tracelet-tests", backend="clearml",
                                      config={"tensorboard_log_dir": root})
    validation = SummaryWriter(os.path.join(root, "validation"))
    extra = tensorboardX.SummaryWriter(os.path.join(root, "tbx"))

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(64, 4), torch.randn(64, 1)
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        early.add_scalar("Loss/Train/CrossEntropy", loss.detach(), step)
        early.add_scalar("accuracy", np.float32(1 / (step + 1)), step)  # a tag without "/"
        validation.add_scalar("loss", loss.item() * 1.1, step)
        extra.add_scalar("loss", np.float64(loss.item() * 0.9), step)
        early.add_scalars("lr", {"base": 0.1, "scaled": 0.1 * step}, step)
        extra.add_scalars("grad", {"norm": float(model.weight.grad.norm())}, step)
        if step % 5 == 0:
            early.add_histogram("Weights/Layer1", model.weight, step)
            early.add_image("Predictions", torch.rand(3, 8, 8), step)
            early.add_text("Notes", f"step {step}: loss {loss.item():.3f}", step)
    early.add_scalar("odd/nan", float("nan"), 100)
    early.add_scalar("odd/inf", float("inf"), 101)
    early.add_scalar("odd/out_of_order", 1.0, 50)
    early.add_scalar("odd/out_of_order", 2.0, 10)  # a step that goes back
    early.add_scalar("odd/out_of_order", 3.0, 10)  # and repeats
    early.add_hparams({"lr": 0.1, "optimizer": "sgd", "batch": 64}, {"hparam/loss": loss.item()})
    extra.add_hparams({"dropout": 0.5}, {"hparam/tbx_loss": 0.25})
    for writer in (early, validation, extra):
        writer.close()
    return run


def expected_tag(root: str, path: str, tag: str) -> str:
    """The documented names: the root verbatim, other writers by relative logdir, add_scalars as group/key,
    add_hparams metrics in the namespace of the writer they were called on."""
    relative = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "/")
    parts = [] if relative == "." else relative.split("/")
    if parts and parts[-1].startswith("lr_"):  # torch add_scalars: <logdir>/<main>_<key>
        return "/".join([*parts[:-1], tag, parts[-1][len(tag) + 1:]])
    if len(parts) >= 2 and parts[-2] == "grad":  # tensorboardX add_scalars: <logdir>/<main>/<key>
        return "/".join([*parts[:-2], tag, parts[-1]])
    if parts and parts[-1].replace(".", "").isdigit():  # add_hparams: <logdir>/<time.time()>
        parts = parts[:-1]
    return "/".join([*parts, tag])


def test_every_value_in_the_event_files_reaches_the_offline_session_exactly_once(clearml_cache, tmp_path):
    root = str(tmp_path / "runs")
    run = train_and_log(root)
    tracelet_otel.stop_logging()

    expected: Counter[tuple[str, str, int, float]] = Counter()
    non_finite = []
    for path in event_files(root):
        for tag, step, value, _ in scalars_in(path):
            name = expected_tag(root, path, tag)
            if math.isfinite(value):
                expected[(*title_series(name), step, value)] += 1
            else:
                non_finite.append(f"tracelet-otel: scalar {name!r} is {value} at step {step} "
                                  "(ClearML cannot plot NaN or inf; not plotted)")
    (folder,) = session_folders(clearml_cache)
    session = read_session(folder)

    assert sum(expected.values()) == STEPS * 7 + 3 + 2
    assert session.scalars == expected
    assert ("Loss/Train", "CrossEntropy", 0) in {key[:3] for key in session.scalars}
    assert ("accuracy", "accuracy", 0) in {key[:3] for key in session.scalars}
    assert sorted(session.console_lines_starting("tracelet-otel: scalar")) == sorted(non_finite)
    assert run.delivery["clearml"]["undelivered"] == 0

    images = sorted((sample.title, sample.series, sample.iteration) for sample in session.samples)
    assert images == [("Predictions", "Predictions", step) for step in (0, 5, 10)]
    assert all(sample.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for sample in session.samples)
    histograms = [(title, series, step) for title, series, step, _ in session.plots]
    assert histograms == [("Weights", "Layer1", step) for step in (0, 5, 10)]
    (bars,) = session.plots[0][3]["data"]
    assert sum(bars["y"]) == 4  # the 4 weights of the layer
    notes = session.console_lines_starting("Notes (step ")
    assert [line.split(":")[0] for line in notes] == [f"Notes (step {step})" for step in (0, 5, 10)]
    assert notes[0].startswith("Notes (step 0): step 0: loss ")

    assert {key: value for key, value in session.parameters.items() if key.startswith("TB_hparams/")} == {
        "TB_hparams/lr": "0.1", "TB_hparams/optimizer": "sgd", "TB_hparams/batch": "64", "TB_hparams/dropout": "0.5"}
    assert sum(1 for name in session.artifacts if name.startswith("hparams/")) == 2


def test_the_task_describes_the_training_process_not_the_delivery_worker(clearml_cache, tmp_path):
    run = tracelet_otel.start_logging("provenance", "tracelet-tests", backend="clearml",
                                      config={"clearml_resource_monitoring": False})
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_scalar("loss", 1.0, 0)
    tracelet_otel.stop_logging()

    session = read_session(session_folders(clearml_cache)[0])
    assert session.task["name"] == "provenance" and session.task["project_name"] == "tracelet-tests"
    script = session.task["script"]
    assert "tracelet_otel" not in script["entry_point"] and "delivery" not in script["entry_point"]
    assert script["entry_point"].endswith(".py")  # pytest's own program, the process that logged
    properties = session.parameters
    assert properties["properties/tracelet_run_id"] == run.run_id
    assert properties["properties/training_pid"] == str(os.getpid())
    assert properties["properties/training_cwd"] == str(tmp_path)
    assert properties["properties/tracelet_status"] == "FINISHED"
