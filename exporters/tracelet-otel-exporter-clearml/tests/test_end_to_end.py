"""The TensorBoard event files are the truth: a real training loop logged through torch and tensorboardX reaches
an offline ClearML session through the public API, every scalar exactly once with its step, and images,
histograms, text and hparams are there too."""

from __future__ import annotations

import math
import os
import time
from collections import Counter

import pytest
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import event_files, expected_key, log_fidelity_scenario, scalars_in
from tracelet_otel_clearml import title_series
from tracelet_otel_clearml.testing import read_session, session_folders

STEPS = 12


def train_and_log(root: str) -> tracelet_otel.Run:
    return log_fidelity_scenario(root, lambda: tracelet_otel.start_logging(
        "fidelity", "tracelet-tests", backend="clearml", config={"tensorboard_log_dir": root}),
        steps=STEPS, media_every=5)


def test_every_value_in_the_event_files_reaches_the_offline_session_exactly_once(clearml_cache, tmp_path):
    root = str(tmp_path / "runs")
    run = train_and_log(root)
    tracelet_otel.stop_logging()

    expected: Counter[tuple[str, str, int, float]] = Counter()
    non_finite = []
    for path in event_files(root):
        for tag, step, value, _ in scalars_in(path):
            name = expected_key(root, path, tag)
            if math.isfinite(value):
                expected[(*title_series(name), step, value)] += 1
            else:
                non_finite.append(f"tracelet-otel: scalar {name!r} is {value} at step {step} "
                                  "(ClearML cannot plot NaN or inf; not plotted)")
    (folder,) = session_folders(clearml_cache)
    session = read_session(folder)

    assert sum(expected.values()) == STEPS * 7 + 4 + 2  # NaN and inf are console lines
    assert session.scalars == expected
    assert ("Loss/Train", "CrossEntropy", 0) in {key[:3] for key in session.scalars}
    assert sorted(session.console_lines_starting("tracelet-otel: scalar")) == sorted(non_finite)
    assert run.delivery["clearml"]["undelivered"] == 0

    images = sorted((sample.title, sample.series, sample.iteration) for sample in session.samples)
    assert images == [("Predictions", "Predictions", step) for step in (0, 5, 10)]
    assert all(sample.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for sample in session.samples)
    histograms = [(title, series, step) for title, series, step, _ in session.plots]
    assert histograms == [("Weights", "Layer1", step) for step in (0, 5, 10)]
    (bars,) = session.plots[0][3]["data"]
    assert sum(bars["y"]) == pytest.approx(4)  # the 4 weights of the layer, spread over TensorBoard's bars
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
    assert not [name for name in properties if "tracelet" in name]  # our bookkeeping is out of the user's sight
    assert session.bookkeeping["tracelet_run_id"] == run.run_id
    assert properties["properties/training_pid"] == str(os.getpid())
    assert properties["properties/training_cwd"] == str(tmp_path)
    assert session.bookkeeping["tracelet_status"] == "FINISHED"


def test_the_resource_monitor_measures_the_training_process_not_the_delivery_worker(clearml_cache, tmp_path):
    (tmp_path / "clearml.conf").write_text("sdk.development.worker.report_start_sec: 1\n")  # not after 30 s
    held = b"\x01" * (300 * 2**20)  # written, so resident: the training process holds 300 MB more than the
    # whole delivery worker, which ClearML's own monitor would measure (~160 MB)
    tracelet_otel.start_logging("monitored", "tracelet-tests", backend="clearml")
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        for step in range(20):  # ClearML's monitor reports when the iteration moves on
            writer.add_scalar("loss", 1.0, step)
            time.sleep(0.2)
    tracelet_otel.stop_logging()

    session = read_session(session_folders(clearml_cache)[0])
    memory = [value for title, series, value in session.monitor if series == "memory_used_gb"]
    assert memory and min(memory) >= len(held) / 2**30
