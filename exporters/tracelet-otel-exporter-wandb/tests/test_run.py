"""The W&B run against real offline W&B, read back from the run's own transaction log."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import wave
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from tracelet_otel.backends import RunInfo
from tracelet_otel.delivery.sender import Sender
from tracelet_otel.delivery.spool import Spool
from tracelet_otel.errors import RecordRejected
from tracelet_otel.payloads import ArtifactStore, Histogram
from tracelet_otel.records import Record, RecordKind
from tracelet_otel_wandb import DELIVERED_SEQ_KEY, WandbBackend, WandbRun
from tracelet_otel_wandb.testing import read_run, run_directories


def png(width: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((width, width, 3), 200, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def gif() -> bytes:
    frames = [Image.fromarray(np.full((8, 8, 3), shade, dtype=np.uint8)) for shade in (0, 128, 255)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def wav() -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(8000)
        file.writeframes(np.zeros(800, dtype="<i2").tobytes())
    return buffer.getvalue()


def scalar(tag: str, value: float, step: int) -> Record:
    return Record(RecordKind.SCALAR, tag, step, 1700000000.0 + step, value=value)


def open_run(**source) -> WandbRun:
    return WandbBackend().open_run(RunInfo("ours", "by-hand", "tracelet-tests", source=source or None), {})


def stored_scalars(wandb_dir: str, run_id: str) -> Counter:
    """(key, global_step, value) of every scalar in every directory of the run."""
    found: Counter = Counter()
    for directory in run_directories(wandb_dir, run_id):
        for row in read_run(directory).history:
            for key, value in row.items():
                if not key.startswith("_") and key != "global_step" and not isinstance(value, dict):
                    found[key, row["global_step"], value] += 1
    return found


def test_every_payload_kind_reaches_the_run_as_its_wandb_type(tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    image = png()
    histogram = {"min": 0.0, "max": 2.0, "num": 3, "sum": 3.0, "sum_squares": 5.0, "bucket_limit": [0.0, 1.0, 2.0],
                 "bucket": [0, 1, 2]}
    curve = {name: [1.0, 0.5] for name in ("true_positives", "false_positives", "true_negatives", "false_negatives",
                                           "precision", "recall")}
    records = [
        scalar("loss", 0.5, 3),
        Record(RecordKind.IMAGE, "samples/image", 3, 1.0, blob=store.put(image, "image/png")),
        Record(RecordKind.VIDEO, "samples/video", 3, 1.0, blob=store.put(gif(), "image/gif")),
        Record(RecordKind.AUDIO, "samples/audio", 3, 1.0, blob=store.put(wav(), "audio/wav")),
        Record(RecordKind.HISTOGRAM, "weights", 3, 1.0, blob=store.put(json.dumps(histogram).encode(),
                                                                         "application/json")),
        Record(RecordKind.TEXT, "notes", 3, 1.0, blob=store.put(b"a <b> c", "text/plain")),
        Record(RecordKind.PR_CURVE, "pr", 3, 1.0, blob=store.put(json.dumps(curve).encode(), "application/json")),
        Record(RecordKind.GRAPH, "graph", 0, 1.0, blob=store.put(b"node {}", "text/x-protobuf"),
               filename="graph.pbtxt"),
        Record(RecordKind.HPARAMS, "hparams", 0, 1.0, params={"lr": 0.1, "optimizer": "sgd"},
               blob=store.put(b'{"lr": 0.1}', "application/json"), filename="1700000000.5.json"),
    ]
    run = open_run()
    run.deliver(records, through_seq=len(records))
    run.flush()
    run.finish("FINISHED")

    contents = read_run(run.directory)
    (row,) = contents.history
    assert (row["loss"], row["global_step"]) == (0.5, 3)
    assert {key: row[key]["_type"] for key in ("samples/image", "samples/video", "samples/audio", "weights", "notes",
                                               "pr")} == {
        "samples/image": "image-file", "samples/video": "video-file", "samples/audio": "audio-file",
        "weights": "histogram", "notes": "html-file", "pr": "table-file"}
    bars = Histogram.from_json(histogram).bars()  # what TensorBoard's view draws of these buckets
    assert (row["weights"]["values"], row["weights"]["bins"]) == (pytest.approx(bars.counts), pytest.approx(bars.edges))
    assert sum(row["weights"]["values"]) == pytest.approx(3)
    with open(os.path.join(contents.files_dir, row["samples/image"]["path"]), "rb") as file:
        assert file.read() == image  # TensorBoard's PNG, byte for byte
    with open(os.path.join(contents.files_dir, row["notes"]["path"])) as file:
        assert "a &lt;b&gt; c" in file.read()
    for key in ("samples/video", "samples/audio", "pr"):
        assert os.path.isfile(os.path.join(contents.files_dir, row[key]["path"]))
    assert {"graphs/graph/step_0/graph.pbtxt", "hparams/1700000000.5.json"} <= set(contents.files)
    assert {"lr": 0.1, "optimizer": "sgd"}.items() <= contents.config.items()
    assert "tracelet" not in contents.config and contents.summary["_tracelet_run_id"] == "ours"
    assert (contents.summary[DELIVERED_SEQ_KEY], contents.exit_code) == (len(records), 0)


def test_flush_returns_once_the_batch_is_in_the_transaction_log():
    run = open_run()
    for batch in range(3):
        run.deliver([scalar("loss", batch * 10 + step, batch * 10 + step) for step in range(10)], (batch + 1) * 10)
        run.flush()
        contents = read_run(run.directory)  # while the run is live
        assert len(contents.history) == (batch + 1) * 10 and contents.summary[DELIVERED_SEQ_KEY] == (batch + 1) * 10
    run.finish("FINISHED")


def test_a_batch_sent_again_after_a_failed_flush_is_not_logged_twice(wandb_dir):
    run = open_run()
    batch = [scalar("loss", float(step), step) for step in range(5)]
    run.deliver(batch, through_seq=5)  # flush failed here: the sender sends from the same record again
    run.deliver([*batch, scalar("loss", 5.0, 5)], through_seq=6)
    run.flush()
    run.finish("FINISHED")

    assert stored_scalars(wandb_dir, run.run_id) == Counter({("loss", step, float(step)): 1 for step in range(6)})


def test_records_handed_over_before_a_failed_flush_are_not_logged_again_one_by_one(tmp_path, wandb_dir):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    broken = Record(RecordKind.IMAGE, "broken", 9, 1.0, blob=store.put(b"not a png", "image/png"))
    batch = [scalar("loss", float(step), step) for step in range(5)]
    run = open_run()
    run.deliver(batch, through_seq=5)  # handed to W&B; then its flush failed
    with pytest.raises(RecordRejected):
        run.deliver([*batch, broken], through_seq=6)  # sent again, now with a record W&B rejects
    for seq, record in enumerate(batch, start=1):  # the sender's record-by-record retry
        run.deliver([record], seq)
        run.flush()
    with pytest.raises(RecordRejected):
        run.deliver([broken], 6)
    run.deliver([scalar("loss", 5.0, 5)], 7)
    run.flush()
    run.finish("FINISHED")

    assert stored_scalars(wandb_dir, run.run_id) == Counter({("loss", step, float(step)): 1 for step in range(6)})


def test_a_rejected_payload_is_permanent_and_nothing_of_its_batch_is_logged(tmp_path):
    store = ArtifactStore(str(tmp_path / "artifacts"))
    broken = Record(RecordKind.IMAGE, "broken", 1, 1.0, blob=store.put(b"not a png", "image/png"))
    run = open_run()
    with pytest.raises(RecordRejected) as raised:
        run.deliver([scalar("loss", 1.0, 1), broken], through_seq=2)
    assert "W&B rejects the image payload" in str(raised.value)  # RecordRejected: the sender drops the record
    run.deliver([scalar("loss", 1.0, 1)], through_seq=1)  # the sender's retry, one record at a time
    run.flush()
    run.finish("FINISHED")
    assert [row["loss"] for row in read_run(run.directory).history] == [1.0]


CRASHING_WORKER = textwrap.dedent("""
    import json, os, sys
    from tracelet_otel.backends import RunInfo
    from tracelet_otel.delivery.spool import Spool
    from tracelet_otel_wandb import WandbBackend

    spool = Spool(sys.argv[1])
    run = WandbBackend().open_run(RunInfo("ours", "crash", "tracelet-tests"), {})
    pending = spool.pending(2000)
    for batch in (pending[:1000], pending[1000:]):
        run.deliver([record for _, record in batch], batch[-1][0])
        run.flush()
    spool.mark_delivered(1000)  # the crash comes after the second flush, before its batch is marked delivered
    print(json.dumps(run.reference), flush=True)
    os._exit(9)  # no finish, no atexit: the worker is gone
""")


def test_a_reopened_run_after_a_crash_gets_no_batch_twice(tmp_path, wandb_dir):
    spool = Spool(str(tmp_path / "wandb.spool.sqlite"))
    spool.append(scalar(f"tag{seq % 3}", float(seq), seq // 3) for seq in range(3000))
    crashed = subprocess.run([sys.executable, "-c", CRASHING_WORKER, spool.path], capture_output=True, text=True,
                             timeout=120, check=False)
    assert crashed.returncode == 9, crashed.stderr
    reference = json.loads(crashed.stdout.splitlines()[-1])

    run = WandbBackend().open_run(RunInfo("ours", "crash", "tracelet-tests"), {}, resume=reference)
    assert (run.run_id, run.stored_through(), spool.delivered_seq()) == (reference["run_id"], 2000, 1000)
    sender = Sender(spool, run)  # skips what the run stored, delivers the rest
    assert sender.drain(60)
    sender.stop()
    run.finish("FINISHED")

    expected = Counter({(f"tag{seq % 3}", seq // 3, float(seq)): 1 for seq in range(3000)})
    assert stored_scalars(wandb_dir, reference["run_id"]) == expected
    assert len(run_directories(wandb_dir, reference["run_id"])) == 2


def test_the_run_shows_the_training_process_and_its_system_metrics(tmp_path):
    # A stand-in for the training process, recognisable by its memory.
    training = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * 300 * 2**20; print(flush=True); "
                                 "time.sleep(60)"], stdout=subprocess.PIPE)
    try:
        training.stdout.readline()  # its memory is in use
        program = str(tmp_path / "train.py")
        saved_argv = list(sys.argv)
        run = open_run(program=program, args=["--lr", "0.1"], user="alice", host=socket.gethostname(),
                       pid=training.pid, cwd=str(tmp_path), git_commit="abc123",
                       git_remote="https://example.com/repo.git")
        assert sys.argv == saved_argv
        run.finish("FINISHED")
    finally:
        training.kill()
        training.wait()

    contents = read_run(run.directory)
    environment = contents.environment
    assert (environment["program"], environment["args"], environment["username"], environment["host"]) == (
        program, ["--lr", "0.1"], "alice", socket.gethostname())
    assert environment["git"] == {"commit": "abc123", "remote_url": "https://example.com/repo.git"}
    assert contents.run["display_name"] == "by-hand" and contents.run["project"] == "tracelet-tests"
    memory = [stats["proc.memory.rssMB"] for stats in contents.stats if "proc.memory.rssMB" in stats]
    assert memory and memory[0] > 250  # the training process's memory, not the worker's


def test_system_metrics_can_be_turned_off():
    run = WandbBackend().open_run(RunInfo("ours", "quiet", "tracelet-tests",
                                          source={"pid": os.getpid(), "host": socket.gethostname()}),
                                  {"wandb_system_metrics": False})
    run.finish("FINISHED")
    assert read_run(run.directory).stats == []


def test_wandb_never_syncs_or_patches_tensorboard_itself(monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_SYNC_TENSORBOARD", "true")
    run = open_run()
    assert wandb.patched["tensorboard"] == []
    run.finish("FINISHED")
    assert read_run(run.directory).run["telemetry"]["feature"].get("tensorboard_sync") is None


def test_finished_failed_and_killed_end_with_their_exit_codes():
    codes = {}
    for status in ("FINISHED", "FAILED", "KILLED"):
        run = open_run()
        run.finish(status)
        codes[status] = read_run(run.directory).exit_code
    assert codes == {"FINISHED": 0, "FAILED": 1, "KILLED": 2}


def test_discarding_an_offline_run_leaves_nothing_to_sync():
    run = open_run()
    run.discard()
    assert not os.path.exists(run.directory)
