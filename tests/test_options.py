"""The options of the seed, made real: each one works, unknown ones are errors, TRACELET_* variables count."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tracelet_otel.config import Options, parse_size


def test_an_unknown_option_names_the_nearest_valid_one():
    with pytest.raises(ValueError, match="unknown tracelet_otel option 'capture_image'; did you mean 'capture_images'"):
        tracelet_otel.start_logging("typo", config={"capture_image": False})


@pytest.mark.parametrize(("text", "size"), [("1MB", 1_000_000), ("1MiB", 1_048_576), ("512KB", 512_000),
                                            ("2 GB", 2_000_000_000), (2048, 2048), ("100", 100), (None, None)])
def test_sizes_are_written_like_the_seed(text, size):
    assert parse_size(text) == size


def test_a_size_that_is_not_one_says_how_to_write_it():
    with pytest.raises(ValueError, match="write it like '1MB'"):
        parse_size("big")


def test_environment_variables_fill_options_and_config_wins():
    environ = {"TRACELET_CAPTURE_AUDIO": "false", "TRACELET_MAX_IMAGE_SIZE": "1MB", "TRACELET_CAPTURE_IMAGES": "0"}
    options = Options.resolve({"capture_images": True}, {}, environ)
    assert (options.capture_audio, options.max_image_size, options.capture_images) == (False, 1_000_000, True)


def test_backend_options_are_valid_options():
    options = Options.resolve({"mlflow_tracking_uri": "sqlite:///x.db"}, {"mlflow_tracking_uri": str}, {})
    assert options.backend_options == {"mlflow_tracking_uri": "sqlite:///x.db"}


def test_backend_options_from_variables_are_parsed_by_their_declared_type():
    types = {"tracker_offline": bool, "tracker_retries": int, "tracker_url": str}
    environ = {"TRACELET_TRACKER_OFFLINE": "false", "TRACELET_TRACKER_RETRIES": "3", "TRACELET_TRACKER_URL": "x"}
    options = Options.resolve(None, types, environ)
    assert options.backend_options == {"tracker_offline": False, "tracker_retries": 3, "tracker_url": "x"}
    with pytest.raises(ValueError, match="not a boolean"):
        Options.resolve(None, types, {"TRACELET_TRACKER_OFFLINE": "maybe"})


def log_media(logdir: str) -> None:
    with SummaryWriter(logdir) as writer:
        writer.add_scalar("loss", 1.0, 0)
        writer.add_image("small", np.zeros((3, 8, 8), dtype=np.float32), 0)
        writer.add_image("noise", np.random.default_rng(0).random((3, 256, 256)), 0)
        writer.add_histogram("weights", np.arange(100.0), 0)
        writer.add_audio("beep", np.sin(np.linspace(0, 100, 8000)), 0, sample_rate=8000)


def test_capture_switches_leave_out_their_kind_and_count_it(mlflow_store, tmp_path):
    tracelet_otel.start_logging("switches", config={
        "capture_images": False, "capture_histograms": False, "capture_audio": False})
    log_media(str(tmp_path / "runs"))
    run = tracelet_otel.stop_logging()

    assert mlflow_store.artifacts(run.backends["mlflow"].run_id) == []
    assert set(mlflow_store.run(run.backends["mlflow"].run_id).data.metrics) == {"loss"}
    assert run.capture["dropped"] == {"capture_images is off": 2, "capture_histograms is off": 1,
                                      "capture_audio is off": 1}


def test_track_tensorboard_false_captures_nothing(mlflow_store, tmp_path):
    tracelet_otel.start_logging("off", config={"track_tensorboard": False})
    log_media(str(tmp_path / "runs"))
    run = tracelet_otel.stop_logging()
    assert mlflow_store.run(run.backends["mlflow"].run_id).data.metrics == {}


def test_max_image_size_downscales_images_to_fit(mlflow_store, tmp_path, caplog):
    tracelet_otel.start_logging("small-images", config={"max_image_size": "20KB"})
    log_media(str(tmp_path / "runs"))
    run = tracelet_otel.stop_logging()
    run_id = run.backends["mlflow"].run_id

    noise = mlflow_store.read_artifact(run_id, "images/noise/step_0.png")
    assert len(noise) <= 20_000
    assert Image.open(io.BytesIO(noise)).size < (256, 256)
    assert mlflow_store.read_artifact(run_id, "images/small/step_0.png")  # under the limit: as written
    assert "'noise' downscaled" in caplog.text


def test_tensorboard_log_dir_is_the_root_that_keeps_tags_verbatim(mlflow_store, tmp_path):
    root = tmp_path / "runs"
    tracelet_otel.start_logging("root", config={"tensorboard_log_dir": str(root)})
    for name in ("train", "validation"):  # the seed's two-writer example
        with SummaryWriter(str(root / name)) as writer:
            writer.add_scalar("loss", 1.0, 0)
    run = tracelet_otel.stop_logging()
    assert set(mlflow_store.run(run.backends["mlflow"].run_id).data.metrics) == {"train/loss", "validation/loss"}


def test_without_a_root_the_first_writer_keeps_its_tags_and_the_next_is_namespaced(mlflow_store, tmp_path):
    tracelet_otel.start_logging("first-root")
    for name in ("train", "validation"):
        with SummaryWriter(str(tmp_path / "runs" / name)) as writer:
            writer.add_scalar("loss", 1.0, 0)
    run = tracelet_otel.stop_logging()
    assert set(mlflow_store.run(run.backends["mlflow"].run_id).data.metrics) == {"loss", "validation/loss"}


def test_the_tracking_uri_option_beats_mlflow_tracking_uri(mlflow_store, tmp_path):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run = tracelet_otel.start_logging("elsewhere", config={"mlflow_tracking_uri": other})
    tracelet_otel.stop_logging()
    assert run.backends["mlflow"].reference["tracking_uri"] == other
    assert os.path.exists(tmp_path / "other.db")


def test_max_spool_size_bounds_the_disk_a_run_uses_and_counts_what_did_not_fit(mlflow_store, tmp_path):
    tracelet_otel.start_logging("tiny-spool", config={"max_spool_size": "60KB"})
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        for step in range(2000):
            writer.add_scalar("loss", 1.0, step)
    run = tracelet_otel.stop_logging()

    delivered = len(mlflow_store.client.get_metric_history(run.backends["mlflow"].run_id, "loss"))
    reason = "spool full (max_spool_size)"
    dropped = run.capture["dropped"].get(reason, 0) + run.delivery["mlflow"]["dropped"].get(reason, 0)
    assert 0 < delivered < 2000 and delivered + dropped == 2000
