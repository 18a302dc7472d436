"""The default payload store holds a payload until every backend of the run has it, and not a moment less: the
disk does not fill twice, and replay after a crash still finds what waits. A store the user named is theirs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import numpy as np
from tensorboard.compat.proto.event_pb2 import Event
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import image

import tracelet_otel
from tests.support import processes_below
from tracelet_otel.config import Options
from tracelet_otel.conversion import EventConverter
from tracelet_otel.delivery import Spool
from tracelet_otel.layout import RunDirectory
from tracelet_otel.payloads import RunPayloadStore
from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel_mlflow.testing import logged_images

TRAINING = textwrap.dedent("""
    import sys, time
    import numpy as np
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    run = tracelet_otel.start_logging("killed", "payloads", config={"mlflow_tracking_uri": sys.argv[1]})
    print(run.directory, flush=True)
    sys.stdin.readline()  # the test holds the delivery worker meanwhile
    with SummaryWriter("runs/killed") as writer:
        for step in range(3):
            writer.add_image("Samples", np.full((3, 8, 8), step / 3), step)
            writer.add_histogram("Weights", np.arange(100.0) * (step + 1), step)
    time.sleep(0.5)  # the capture thread journals every 50 ms
    print("LOGGED", flush=True)
    time.sleep(3600)
""")


def log_payloads(logdir: str, steps: range) -> None:
    with SummaryWriter(logdir) as writer:
        for step in steps:
            writer.add_image("Samples", np.full((3, 8, 8), step / 10), step)
            writer.add_histogram("Weights", np.arange(100.0) * (step + 1), step)
            writer.add_text("Notes", f"step {step}", step)


def payload_files(run_dir: str) -> list[str]:
    return sorted(name for _, _, names in os.walk(RunDirectory(run_dir).payloads) for name in names)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {condition.__doc__ or condition}")
        time.sleep(0.1)


def delivery_worker(backend: str) -> int:
    """The process id of the delivery process of this test's run for ``backend``."""
    for pid, command in processes_below(os.getpid()).items():
        if command.split()[1:4] == ["-m", "tracelet_otel.delivery", backend]:
            return pid
    raise LookupError(f"no delivery process for {backend}")


def test_a_delivered_run_leaves_nothing_in_the_default_store(mlflow_store, tmp_path):
    run = tracelet_otel.start_logging("cleaned", "payloads")
    log_payloads(str(tmp_path / "runs"), range(3))
    tracelet_otel.stop_logging()

    assert not os.path.exists(run.directory)
    assert os.listdir(tmp_path / ".tracelet") == ["runs"] and os.listdir(tmp_path / ".tracelet" / "runs") == []
    artifacts = mlflow_store.artifacts(run.backends["mlflow"].run_id)
    assert {f"images/Samples/step_{step}.png" for step in range(3)} <= set(artifacts)
    assert {f"histograms/Weights/step_{step}.json" for step in range(3)} <= set(artifacts)


def test_a_payload_leaves_the_store_once_every_backend_has_it_and_not_before(mlflow_store, tmp_path):
    run = tracelet_otel.start_logging("two-backends", "payloads", backend=["mlflow", "jsonl"],
                                      config={"jsonl_directory": str(tmp_path)})
    jsonl_worker = delivery_worker("jsonl")
    os.kill(jsonl_worker, signal.SIGSTOP)
    try:
        log_payloads(str(tmp_path / "runs"), range(2))
        run_id = run.backends["mlflow"].run_id

        def mlflow_has_them():
            """MLflow has the six payloads"""
            return sum(path.endswith("step_1.png") or path.endswith("step_1.json") or path.endswith("step_1.txt")
                       for path in mlflow_store.artifacts(run_id)) == 3
        wait_until(mlflow_has_them)
        time.sleep(1.0)  # the agent has looked at least once since MLflow's delivery
        assert len(payload_files(run.directory)) == 6  # jsonl has none of them yet
    finally:
        os.kill(jsonl_worker, signal.SIGCONT)

    def store_is_empty():
        """the run's payloads are gone"""
        return payload_files(run.directory) == []
    wait_until(store_is_empty)  # while the run goes on
    assert tracelet_otel.stop_logging().delivery["jsonl"]["undelivered"] == 0


def test_after_a_hard_kill_replay_delivers_every_payload_and_then_removes_them(mlflow_store, tmp_path):
    (tmp_path / "train.py").write_text(TRAINING)
    process = subprocess.Popen([sys.executable, "train.py", mlflow_store.uri], cwd=tmp_path, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        run_dir = process.stdout.readline().strip()
        os.kill(delivery_worker("mlflow"), signal.SIGSTOP)  # nothing reaches MLflow before the kill
        process.stdin.write("\n")
        process.stdin.flush()
        assert process.stdout.readline() == "LOGGED\n"

        def all_stored():
            """the six payloads are in the run's store"""
            return len(payload_files(run_dir)) == 6
        wait_until(all_stored)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # training, agent and the stopped worker: a preempted job
        process.wait()

    replay = subprocess.run([os.path.join(os.path.dirname(sys.executable), "tracelet-otel"), "replay"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, replay.stderr
    (run,) = mlflow_store.client.search_runs([mlflow_store.client.get_experiment_by_name("payloads").experiment_id])
    assert [(i.key, i.step) for i in logged_images(mlflow_store.client, run.info.run_id)] == [
        *(("Samples", step) for step in range(3)), *(("histograms/Weights", step) for step in range(3))]
    assert {f"histograms/Weights/step_{step}.json" for step in range(3)} <= set(
        mlflow_store.artifacts(run.info.run_id))
    assert not os.path.exists(run_dir)


def test_a_store_the_user_named_keeps_everything(mlflow_store, tmp_path):
    tracelet_otel.start_logging("named", "payloads", config={"artifact_store": str(tmp_path / "kept")})
    log_payloads(str(tmp_path / "runs"), range(2))
    tracelet_otel.stop_logging()
    assert len([name for _, _, names in os.walk(tmp_path / "kept") for name in names]) == 6


def test_payloads_past_max_spool_size_are_dropped_and_counted_like_a_full_spool(tmp_path):
    """The bound is on what waits for delivery: once payloads are delivered and removed, new ones fit again."""
    pngs = [image("Samples", np.random.default_rng(step).random((3, 16, 16)), dataformats="CHW") for step in range(4)]
    size = len(pngs[0].value[0].image.encoded_image_string)
    store = RunPayloadStore(str(tmp_path / "payloads"), max_bytes=int(size * 2.5))
    converter = EventConverter(Options(), store)
    converter.register_writer({"id": 1, "logdir": str(tmp_path / "runs"), "call": None})

    def convert(step: int) -> list:
        return converter.convert_event(1, Event(summary=pngs[step], step=step, wall_time=1.7e9).SerializeToString())

    assert [len(convert(step)) for step in range(3)] == [1, 1, 0]
    assert converter.dropped == {"spool full (max_spool_size)": 1}
    store.remove_unless(lambda sha256: False)  # every backend has them
    assert len(convert(3)) == 1


def test_a_spool_says_which_payloads_its_waiting_records_reference(tmp_path):
    """What the agent asks each spool before it removes a payload; NaN and infinite scalars beside it are not
    strict JSON, and must not get in the way."""
    spool = Spool(str(tmp_path / "mlflow.spool.sqlite"))
    image = Blob("file:///store/ab/abc.png", "ab" + "c" * 62, "image/png", 10)
    spool.append([Record(RecordKind.SCALAR, "loss", 0, 1.0, value=float("nan")),
                  Record(RecordKind.SCALAR, "loss", 1, 1.0, value=float("inf")),
                  Record(RecordKind.IMAGE, "Samples", 0, 1.0, blob=image)])
    assert spool.holds_blob(image.sha256) and not spool.holds_blob("0" * 64)
    spool.mark_delivered(3)
    assert not spool.holds_blob(image.sha256)
