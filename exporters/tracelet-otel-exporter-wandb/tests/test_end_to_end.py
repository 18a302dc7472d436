"""Through the public API into offline W&B: the TensorBoard event files are the truth, and every scalar in them
is in the W&B run exactly once, at its step, with media, text and hparams alongside."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter, defaultdict

import numpy as np
import tensorboardX
import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import event_files, scalars_in
from tracelet_otel_wandb import RunContents, read_run, run_directories


def train_and_log(root: str) -> tracelet_otel.Run:
    """A small regression model, logged through torch and tensorboardX writers, with awkward values."""
    run = tracelet_otel.start_logging("fidelity", "tracelet-tests", backend="wandb",
                                      config={"tensorboard_log_dir": root})
    main = SummaryWriter(root)
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
        main.add_scalar("Loss/Train/CrossEntropy", loss.detach(), step)
        main.add_scalar("Metrics/Accuracy/Train", np.float32(1 / (step + 1)), step)
        extra.add_scalar("loss", loss.item() * 0.9, step)
        main.add_scalars("lr", {"base": 0.1, "scaled": 0.1 * step}, step)
        extra.add_scalars("grad", {"norm": float(model.weight.grad.norm())}, step)
        if step % 10 == 0:
            main.add_histogram("Weights/Layer1", model.weight, step)
            main.add_image("Predictions", torch.rand(3, 8, 8), step)
            main.add_text("Notes", f"step {step}: loss {loss.item():.3f}", step)
    main.add_scalar("odd/nan", float("nan"), 100)
    main.add_scalar("odd/inf", float("inf"), 101)
    main.add_scalar("odd/out_of_order", 1.0, 50)
    main.add_scalar("odd/out_of_order", 2.0, 10)  # a step that goes back
    main.add_scalar("odd/out_of_order", 3.0, 10)  # and repeats
    main.add_hparams({"lr": 0.1, "optimizer": "sgd", "batch": 64}, {"hparam/loss": loss.item()})
    extra.add_hparams({"dropout": 0.5}, {"hparam/tbx_loss": 0.25})
    main.close()
    extra.close()
    tracelet_otel.stop_logging()
    return run


def expected_key(root: str, path: str, tag: str) -> str:
    """The documented names: the root verbatim, other writers by relative logdir, add_scalars as group/key,
    add_hparams metrics in the namespace of the writer they were called on."""
    parts = [part for part in os.path.relpath(os.path.dirname(path), root).split(os.sep) if part != "."]
    if parts and parts[-1].startswith("lr_"):  # torch add_scalars: <logdir>/<main>_<key>
        return "/".join([*parts[:-1], tag, parts[-1][len(tag) + 1 :]])
    if len(parts) >= 2 and parts[-2] == "grad":  # tensorboardX add_scalars: <logdir>/<main>/<key>
        return "/".join([*parts[:-2], tag, parts[-1]])
    if parts and parts[-1].replace(".", "").isdigit():  # add_hparams: <logdir>/<time.time()>
        parts = parts[:-1]
    return "/".join([*parts, tag])


def comparable(value: float) -> object:
    return "nan" if math.isnan(value) else value


def truth(root: str) -> dict[tuple[str, int, object], list[float]]:
    """(key, step, value) -> the wall times of the event-file scalars that have them."""
    found: dict[tuple[str, int, object], list[float]] = defaultdict(list)
    for path in event_files(root):
        for tag, step, value, wall_time in scalars_in(path):
            found[expected_key(root, path, tag), step, comparable(value)].append(wall_time)
    return found


def wandb_contents(run: tracelet_otel.Run) -> RunContents:
    reference = run.backends["wandb"].reference
    (directory,) = run_directories(os.path.join(reference["dir"], "wandb"), reference["run_id"])
    return read_run(directory)


def is_scalar(key: str, value: object) -> bool:
    return not key.startswith("_") and key != "global_step" and not isinstance(value, dict)


def test_every_scalar_in_the_event_files_is_in_wandb_exactly_once_at_its_step(tmp_path):
    root = str(tmp_path / "runs")
    run = train_and_log(root)

    expected = truth(root)
    contents = wandb_contents(run)
    stored = Counter((key, row["global_step"], comparable(value))
                     for row in contents.history for key, value in row.items() if is_scalar(key, value))
    assert sum(len(times) for times in expected.values()) == 30 * 6 + 5 + 2
    assert stored == Counter({point: len(times) for point, times in expected.items()})
    assert run.delivery["wandb"]["undelivered"] == 0
    assert len(contents.history) < 30 * 6 / 2  # the records of one step share rows


def test_each_row_keeps_the_tensorboard_wall_time_of_its_latest_record(tmp_path):
    root = str(tmp_path / "runs")
    run = train_and_log(root)

    expected = truth(root)
    for row in wandb_contents(run).history:
        wall_times = [expected[key, row["global_step"], comparable(value)].pop()
                      for key, value in row.items() if is_scalar(key, value)]
        if any(isinstance(value, dict) for value in row.values()):  # media of the same step may come later
            assert row["_timestamp"] >= max(wall_times, default=0.0)
        else:
            assert row["_timestamp"] == max(wall_times)


def test_images_histograms_text_and_hparams_reach_the_run_named_after_the_training_job(tmp_path):
    run = train_and_log(str(tmp_path / "runs"))

    contents = wandb_contents(run)
    media = {(key, row["global_step"]): value["_type"]
             for row in contents.history for key, value in row.items() if isinstance(value, dict)}
    for step in (0, 10, 20):
        assert media["Predictions", step] == "image-file"
        assert media["Weights/Layer1", step] == "histogram"
        assert media["Notes", step] == "html-file"
    assert {"lr": 0.1, "optimizer": "sgd", "batch": 64, "dropout": 0.5}.items() <= contents.config.items()
    assert contents.config["tracelet"] == {"run_id": run.run_id}
    assert (contents.run["display_name"], contents.run["project"], contents.exit_code) == (
        "fidelity", "tracelet-tests", 0)
    assert contents.environment["args"] == sys.argv[1:]  # the training process's, not the delivery worker's
    assert "tracelet_otel" not in contents.environment["program"]
