"""Through the public API into offline W&B: the TensorBoard event files are the truth, and every scalar in them
is in the W&B run exactly once, at its step, with media, text and hparams alongside."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter, defaultdict

import tracelet_otel
from tests.support import event_files, expected_key, log_fidelity_scenario, scalars_in
from tracelet_otel_wandb.testing import RunContents, read_run, run_directories


def train_and_log(root: str) -> tracelet_otel.Run:
    run = log_fidelity_scenario(root, lambda: tracelet_otel.start_logging(
        "fidelity", "tracelet-tests", backend="wandb", config={"tensorboard_log_dir": root}))
    tracelet_otel.stop_logging()
    return run


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
    assert sum(len(times) for times in expected.values()) == 30 * 7 + 6 + 2
    assert stored == Counter({point: len(times) for point, times in expected.items()})
    assert run.delivery["wandb"]["undelivered"] == 0
    assert len(contents.history) < 30 * 7 / 2  # the records of one step share rows


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


def test_images_histograms_text_and_hparams_reach_the_run_named_after_the_training_job(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", [sys.argv[0], "--epochs", "3"])  # whatever pytest was given, even nothing
    run = train_and_log(str(tmp_path / "runs"))

    contents = wandb_contents(run)
    media = {(key, row["global_step"]): value["_type"]
             for row in contents.history for key, value in row.items() if isinstance(value, dict)}
    for step in (0, 10, 20):
        assert media["Predictions", step] == "image-file"
        assert media["Weights/Layer1", step] == "histogram"
        assert media["Notes", step] == "html-file"
    assert {"lr": 0.1, "optimizer": "sgd", "batch": 64, "dropout": 0.5}.items() <= contents.config.items()
    assert "tracelet" not in contents.config and contents.summary["_tracelet_run_id"] == run.run_id
    assert (contents.run["display_name"], contents.run["project"], contents.exit_code) == (
        "fidelity", "tracelet-tests", 0)
    assert contents.environment["args"] == ["--epochs", "3"]  # the training process's, not the delivery worker's
    assert "tracelet_otel" not in contents.environment["program"]
