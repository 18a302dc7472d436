"""Event files as a source (``tracelet-otel sync``): logdirs nobody captured live reach the trackers losslessly,
exactly once however often they are synced, and while a job still writes them. The event files are the truth:
every test reads them (or TensorBoard's own view of them) and the tracker's stored data."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
from collections import Counter

import numpy as np
import pytest
import tensorboardX
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins.audio import metadata as audio_metadata
from tensorboard.plugins.histogram.summary_v2 import histogram_pb
from tensorboard.plugins.hparams.summary_v2 import hparams_pb
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.writer import FileWriter

from tests.support import (
    MlflowStore,
    ProcessGroup,
    comparable,
    event_files,
    expected_key,
    log_fidelity_scenario,
    scalars_in,
)
from tracelet_otel.config import Options
from tracelet_otel.sync import Sync, SyncSettings
from tracelet_otel_clearml.testing import read_session, session_folders
from tracelet_otel_wandb.testing import read_run

TRACELET = os.path.join(os.path.dirname(sys.executable), "tracelet-otel")


def sync(logdir: str, backends: tuple[str, ...] = ("mlflow",), **settings) -> dict:
    """One ``tracelet-otel sync`` in this process; the runs' summaries by name."""
    options = Options.resolve(settings.pop("config", None), {"jsonl_directory": str, "mlflow_tracking_uri": str})
    run = Sync(SyncSettings(logdir=logdir, backends=backends, project=settings.pop("project", "synced"),
                            options=options, **settings), dict(options.backend_options or {}))
    run.read(complete=True)
    return {summary.name: summary for summary in run.finish(120)}


def runs_by_name(store: MlflowStore, project: str = "synced") -> dict:
    experiment = store.client.get_experiment_by_name(project)
    return {run.info.run_name: run for run in store.client.search_runs([experiment.experiment_id])}


def expected_points(root: str) -> Counter:
    points: Counter = Counter()
    for path in event_files(root):
        for tag, step, value, wall_time in scalars_in(path):
            points[expected_key(root, path, tag), step, comparable(value), int(wall_time * 1000)] += 1
    return points


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (shade, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_tensorflow2_run(logdir: str) -> None:
    """What TensorFlow 2's tf.summary and Keras write: tensor summaries with plugin metadata, written here with
    TensorBoard's own *_pb helpers (no TensorFlow needed)."""
    writer = FileWriter(os.path.join(logdir, "train"))
    for step in range(5):
        writer.add_summary(scalar_pb("epoch_loss", 1.0 / (step + 1)), step, 1_700_000_000.0 + step)
    writer.add_summary(histogram_pb("kernel", np.random.default_rng(0).normal(size=100)), 0, 1_700_000_000.0)
    writer.add_summary(text_pb("notes", "from TensorFlow 2"), 0, 1_700_000_000.0)
    writer.add_summary(hparams_pb({"units": 64, "optimizer": "adam"}), 0, 1_700_000_000.0)
    images = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag="samples", metadata=image_metadata.create_summary_metadata("samples", ""),
        tensor=tensor_util.make_tensor_proto([b"4", b"4", png(10), png(200)]))])
    writer.add_summary(images, 2, 1_700_000_002.0)
    audio = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag="speech", metadata=audio_metadata.create_summary_metadata("speech", "", audio_metadata.Encoding.Value(
            "WAV")), tensor=tensor_util.make_tensor_proto(np.array([[b"RIFF-wav-bytes", b"label"]], dtype=object)))])
    writer.add_summary(audio, 3, 1_700_000_003.0)
    writer.close()


def test_torch_tensorboardx_and_tensorflow2_runs_reach_mlflow_as_if_they_had_been_logged_live(mlflow_store, tmp_path):
    logdir = tmp_path / "logs"
    log_fidelity_scenario(str(logdir / "scenario"), lambda: None)  # nobody captured it: no start_logging
    write_tensorflow2_run(str(logdir / "keras"))

    summaries = sync(str(logdir))

    runs = runs_by_name(mlflow_store)
    assert set(runs) == {"scenario", "keras"} and all(run.info.status == "FINISHED" for run in runs.values())
    # The names are those the live capture gives (tests/test_fidelity.py checks the same against the same rule).
    stored = mlflow_store.metric_points(runs["scenario"].info.run_id)
    assert stored == expected_points(str(logdir / "scenario"))
    assert sum(stored.values()) == 30 * 7 + 6 + 2
    assert runs["scenario"].data.params == {"lr": "0.1", "optimizer": "sgd", "batch": "64", "dropout": "0.5"}

    keras = runs["keras"].info.run_id
    assert mlflow_store.metric_points(keras) == Counter({  # float32 values, as TensorBoard stores them
        ("train/epoch_loss", step, float(np.float32(1.0 / (step + 1))), 1_700_000_000_000 + 1000 * step): 1
        for step in range(5)})
    assert runs["keras"].data.params == {"units": "64", "optimizer": "adam"}
    artifacts = mlflow_store.artifacts(keras)
    assert {"images/train/samples/0/step_2.png", "images/train/samples/1/step_2.png", "audio/train/speech/step_3.wav",
            "text/train/notes/step_0.txt", "histograms/train/kernel/step_0.json"} <= set(artifacts)
    assert mlflow_store.read_artifact(keras, "images/train/samples/1/step_2.png") == png(200)
    assert mlflow_store.read_artifact(keras, "text/train/notes/step_0.txt") == b"from TensorFlow 2"
    buckets = json.loads(mlflow_store.read_artifact(keras, "histograms/train/kernel/step_0.json"))["buckets"]
    assert len(buckets) == 30 and sum(count for _, _, count in buckets) == 100
    assert summaries["keras"].skipped == Counter() and summaries["scenario"].skipped == Counter()


def test_a_second_sync_delivers_nothing_new_and_what_was_written_since_arrives_once(mlflow_store, tmp_path):
    logdir = tmp_path / "logs"
    writer = SummaryWriter(str(logdir / "growing"))
    for step in range(100):
        writer.add_scalar("loss", step, step)
    writer.flush()
    sync(str(logdir))
    assert sync(str(logdir))["growing"].records == 0

    for step in range(100, 150):
        writer.add_scalar("loss", step, step)  # appended to the same file
    writer.close()
    later = SummaryWriter(str(logdir / "growing"))  # and a new file in the run's directory
    later.add_scalar("loss", 1000.0, 1000)
    later.close()
    assert sync(str(logdir))["growing"].records == 51

    run = runs_by_name(mlflow_store)["growing"]
    assert sorted(point.step for point in mlflow_store.client.get_metric_history(run.info.run_id, "loss")) == [
        *range(150), 1000]
    assert run.info.status == "FINISHED"


def jsonl_steps(directory) -> Counter:
    """Every line a jsonl run file holds: it appends whatever it is given, so a value sent twice is there twice."""
    steps: Counter = Counter()
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as file:
            steps.update(line["step"] for line in map(json.loads, file) if line.get("kind") == "scalar")
    return steps


def test_a_sync_killed_with_sigkill_and_run_again_loses_and_doubles_nothing(tmp_path):
    logdir, out = tmp_path / "logs", tmp_path / "jsonl"
    out.mkdir()
    with SummaryWriter(str(logdir / "big")) as writer:
        for step in range(20_000):
            writer.add_scalar("loss", step, step)
    environment = {**os.environ, "TRACELET_JSONL_DIRECTORY": str(out)}
    command = [TRACELET, "sync", str(logdir), "--backend", "jsonl"]
    with ProcessGroup(command, env=environment) as first:
        deadline = time.monotonic() + 60
        while not any(jsonl_steps(out).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(first.process.pid, signal.SIGKILL)  # the sync and its delivery process, mid-import
        first.process.wait()
    assert 0 < sum(jsonl_steps(out).values()) < 20_000

    status, output = ProcessGroup(command, env=environment).wait(180)
    assert status == 0, output
    assert jsonl_steps(out) == Counter(range(20_000))


def test_follow_delivers_what_a_running_job_flushes_within_seconds_and_stops_cleanly(mlflow_store, tmp_path):
    logdir = tmp_path / "logs"
    writer = SummaryWriter(str(logdir / "live"), flush_secs=1)
    writer.add_scalar("loss", 0.0, 0)
    writer.flush()
    with ProcessGroup([TRACELET, "sync", str(logdir), "--backend", "mlflow", "--project", "synced", "--follow"],
                      env={**os.environ, "MLFLOW_TRACKING_URI": mlflow_store.uri}) as follower:
        reader = threading.Thread(target=follower.wait, args=(300,), daemon=True)
        reader.start()
        latencies = []
        for step in range(1, 4):
            writer.add_scalar("loss", float(step), step)
            written = time.monotonic()
            writer.flush()
            while step not in stored_steps(mlflow_store, "live"):
                assert time.monotonic() - written < 10, f"step {step} not delivered"
                time.sleep(0.1)
            latencies.append(time.monotonic() - written)
        later = SummaryWriter(str(logdir / "second"))  # a run that starts while sync follows
        later.add_scalar("accuracy", 0.5, 0)
        later.close()
        deadline = time.monotonic() + 10
        while not stored_steps(mlflow_store, "second", "accuracy") and time.monotonic() < deadline:
            time.sleep(0.1)
        follower.process.send_signal(signal.SIGTERM)
        reader.join(120)
        assert follower.process.returncode == 0
    writer.close()
    assert max(latencies) < 5 and stored_steps(mlflow_store, "live") == [0, 1, 2, 3]
    assert runs_by_name(mlflow_store)["live"].info.status == "FINISHED"
    assert sync(str(logdir))["live"].records == 0  # its state was saved: nothing twice


def stored_steps(store: MlflowStore, run_name: str, key: str = "loss") -> list[int]:
    experiment = store.client.get_experiment_by_name("synced")
    if experiment is None:
        return []
    runs = [run for run in store.client.search_runs([experiment.experiment_id]) if run.info.run_name == run_name]
    return sorted(point.step for run in runs for point in store.client.get_metric_history(run.info.run_id, key))


def test_a_restart_marker_hides_the_dead_attempts_points_as_tensorboard_does(mlflow_store, tmp_path):
    run_dir = tmp_path / "logs" / "requeued"
    with SummaryWriter(str(run_dir)) as first_attempt:
        for step in range(10):
            first_attempt.add_scalar("loss", 1.0, step)
    time.sleep(1.1)  # the next attempt's file sorts after (its name holds the time)
    with SummaryWriter(str(run_dir), purge_step=6) as second_attempt:  # resumed from the step-6 checkpoint
        for step in range(6, 12):
            second_attempt.add_scalar("loss", 2.0, step)

    summaries = sync(str(tmp_path / "logs"))

    tensorboard = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    tensorboard.Reload()
    shown = sorted((event.step, event.value) for event in tensorboard.Scalars("loss"))
    history = mlflow_store.client.get_metric_history(runs_by_name(mlflow_store)["requeued"].info.run_id, "loss")
    assert sorted((point.step, point.value) for point in history) == shown
    assert shown == [*((step, 1.0) for step in range(6)), *((step, 2.0) for step in range(6, 12))]
    assert summaries["requeued"].skipped == Counter({"hidden by a restart marker (purge_step), as TensorBoard "
                                                     "hides it": 4})


def test_a_corrupt_or_cut_short_file_is_named_and_the_others_still_arrive(mlflow_store, tmp_path):
    logdir = tmp_path / "logs"
    for name in ("good", "bad"):
        with SummaryWriter(str(logdir / name)) as writer:
            for step in range(50):
                writer.add_scalar("loss", step, step)
    (bad,) = event_files(str(logdir / "bad"))
    with open(bad, "rb") as file:
        data = bytearray(file.read())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the middle of a record
    with open(bad, "wb") as file:
        file.write(bytes(data[:-10]))  # and the last record cut short

    summaries = sync(str(logdir))

    assert stored_steps(mlflow_store, "good") == list(range(50))
    assert 40 < len(stored_steps(mlflow_store, "bad")) < 50
    damage = " ".join(summaries["bad"].damage)
    assert "fails its checksum and is skipped" in damage and "cut short" in damage
    assert summaries["good"].damage == []


def test_a_file_rewritten_since_the_last_sync_is_skipped_and_said(mlflow_store, tmp_path, caplog):
    logdir = tmp_path / "logs"
    with SummaryWriter(str(logdir / "run")) as writer:
        writer.add_scalar("loss", 1.0, 0)
    sync(str(logdir))
    (path,) = event_files(str(logdir))
    os.remove(path)
    time.sleep(0.01)
    with tensorboardX.SummaryWriter(str(logdir / "run"), filename_suffix="") as rewriter:
        rewriter.add_scalar("loss", 9.0, 0)
    (rewritten,) = event_files(str(logdir))
    os.rename(rewritten, path)  # another file under the old name

    summaries = sync(str(logdir))

    assert summaries["run"].skipped == Counter({"event file rewritten since the last sync (its first record "
                                                "changed)": 1})
    assert "was rewritten since the last sync" in caplog.text
    assert [point.value for point in mlflow_store.client.get_metric_history(
        runs_by_name(mlflow_store)["run"].info.run_id, "loss")] == [1.0]


def test_runs_are_the_directories_at_the_run_depth(mlflow_store, tmp_path):
    logdir = tmp_path / "output"
    for date in ("2026-11-30", "2026-12-01"):
        for writer_dir in ("", "validation"):
            with SummaryWriter(str(logdir / "runs" / date / writer_dir)) as writer:
                writer.add_scalar("loss", 1.0, 0)
    with SummaryWriter(str(logdir)) as top:  # files directly in LOGDIR: a run named after it
        top.add_scalar("loss", 1.0, 0)

    sync(str(logdir), run_depth=2)

    runs = runs_by_name(mlflow_store)
    assert set(runs) == {"runs/2026-11-30", "runs/2026-12-01", "output"}
    assert set(runs["runs/2026-12-01"].data.metrics) == {"loss", "validation/loss"}


def test_a_logdir_in_a_bucket_is_synced_like_a_directory(mlflow_store, tmp_path, monkeypatch):
    pytest.importorskip("moto.server", reason="the S3 server for this test is moto[server] (requirements-test.txt)")
    s3fs = pytest.importorskip("s3fs", reason="fsspec reaches S3 through s3fs (requirements-test.txt)")
    from tests.test_bridge_s3 import S3Server

    s3 = S3Server(str(tmp_path)).start()
    try:
        for name, value in s3.environment.items():
            monkeypatch.setenv(name, value)
        s3fs.S3FileSystem.clear_instance_cache()  # fsspec keeps filesystems, endpoint and all, per process
        with SummaryWriter(str(tmp_path / "local" / "remote-run")) as writer:
            for step in range(30):
                writer.add_scalar("loss", step, step)
        bucket = s3fs.S3FileSystem()
        bucket.mkdir("logs")
        bucket.put(str(tmp_path / "local"), "logs/experiments", recursive=True)

        sync("s3://logs/experiments")
        assert stored_steps(mlflow_store, "remote-run") == list(range(30))
        assert sync("s3://logs/experiments")["remote-run"].records == 0
    finally:
        s3.kill()


def test_the_same_logdir_reaches_wandb_and_clearml_offline_with_every_scalar(offline_trackers, tmp_path):
    logdir = tmp_path / "logs"
    log_fidelity_scenario(str(logdir / "scenario"), lambda: None, steps=10, media_every=5)
    write_tensorflow2_run(str(logdir / "keras"))

    sync(str(logdir), ("wandb", "clearml"))

    root = str(logdir / "scenario")
    expected = Counter((expected_key(root, path, tag), step, "nan" if np.isnan(value) else value)
                       for path in event_files(root) for tag, step, value, _ in scalars_in(path))
    in_wandb: Counter = Counter()
    for directory in (tmp_path / "wandb").glob("offline-run-*"):
        for row in read_run(str(directory)).history:
            in_wandb.update((key, row["global_step"], "nan" if np.isnan(value) else float(value))
                            for key, value in row.items()
                            if not key.startswith("_") and key != "global_step" and not isinstance(value, dict))
    assert {entry: count for entry, count in in_wandb.items() if not entry[0].startswith("train/")} == expected
    assert {entry[:2] for entry in in_wandb if entry[0].startswith("train/")} == {
        ("train/epoch_loss", step) for step in range(5)}
    in_clearml: Counter = Counter()
    for folder in session_folders(tmp_path / "clearml-cache"):
        in_clearml.update(f"{title}/{series}" if title != series else title
                          for title, series, _, _ in read_session(folder).scalars.elements())
    finite = sum(count for (_, _, value), count in expected.items() if value != "nan" and np.isfinite(value))
    assert sum(in_clearml.values()) == finite + 5  # the scenario's finite scalars (ClearML cannot plot the rest)


def test_a_restart_that_comes_after_its_earlier_points_were_delivered_is_said_once(mlflow_store, tmp_path, caplog):
    run_dir = tmp_path / "logs" / "requeued"
    with SummaryWriter(str(run_dir)) as first_attempt:
        for step in range(10):
            first_attempt.add_scalar("loss", 1.0, step)
    sync(str(tmp_path / "logs"))  # the first attempt is delivered before the job is requeued
    time.sleep(1.1)
    with SummaryWriter(str(run_dir), purge_step=6) as second_attempt:
        second_attempt.add_scalar("loss", 2.0, 6)

    sync(str(tmp_path / "logs"))

    assert "restarts its writer at step 6" in caplog.text and "already had them and keeps them" in caplog.text
    assert len(stored_steps(mlflow_store, "requeued")) == 11  # MLflow keeps every point it was given
