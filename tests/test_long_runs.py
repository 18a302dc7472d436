"""Long runs: a run's disk is bounded by what waits for delivery, never by how long the run is, and freeing the
converted part of the capture journal keeps a killed job's replay exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import ProcessGroup, processes_below, read_until, replay
from tracelet_otel.delivery.spool import WAL_SIZE_LIMIT_BYTES

MB = 10**6


class DiskSampler(threading.Thread):
    """The disk a run's directory takes (allocated blocks of every file), and its journal's, sampled."""

    def __init__(self, run_dir: str) -> None:
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.journal = os.path.join(run_dir, "capture.journal")
        self.peak_dir = self.peak_journal = self.journal_length = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            total = 0
            for directory, _, names in os.walk(self.run_dir):
                for name in names:
                    try:
                        total += os.stat(os.path.join(directory, name)).st_blocks * 512
                    except FileNotFoundError:
                        continue
            self.peak_dir = max(self.peak_dir, total)
            try:
                journal = os.stat(self.journal)
            except FileNotFoundError:
                continue
            self.peak_journal = max(self.peak_journal, journal.st_blocks * 512)
            self.journal_length = journal.st_size


def test_a_long_run_with_a_small_max_spool_size_delivers_everything_and_its_disk_stays_bounded(
        mlflow_store, tmp_path):
    scalars, rate = 50_000, 5000.0
    run = tracelet_otel.start_logging("long", config={"max_spool_size": "1MB"})
    sampler = DiskSampler(run.directory)
    sampler.start()
    writer = SummaryWriter(str(tmp_path / "runs"))
    image = np.random.default_rng(0).integers(0, 255, (3, 64, 64), dtype=np.uint8)  # ~12 kB as a PNG
    started = time.monotonic()
    for step in range(scalars):
        writer.add_scalar("loss", step / scalars, step)
        if step % 1000 == 0:
            image[0, 0, 0] = step // 1000  # a payload of its own each time
            writer.add_image("sample", image, step)
        if step % 500 == 0:  # a steady rate that delivery keeps up with
            time.sleep(max(0.0, started + step / rate - time.monotonic()))
    writer.close()
    stopped = tracelet_otel.stop_logging()
    sampler.stopping.set()
    sampler.join()

    assert stopped.delivery["mlflow"].dropped == {} and stopped.capture.dropped == {}
    run_id = run.backends["mlflow"].run_id
    assert sorted(step for _, step, _, _ in mlflow_store.metric_points(run_id)) == list(range(scalars))
    assert len(mlflow_store.artifacts(run_id, "images/sample")) == scalars // 1000
    # The journal held everything the run logged, and took a fraction of it on disk at any moment.
    assert sampler.journal_length > 2 * MB
    assert sampler.peak_journal < sampler.journal_length / 4
    # Journal, spool and payloads each within max_spool_size, and sqlite's write-ahead log, which it reuses.
    assert sampler.peak_dir < 3 * MB + WAL_SIZE_LIMIT_BYTES + 1 * MB


FREED_THEN_KILLED = textwrap.dedent("""
    import sys
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    run = tracelet_otel.start_logging("freed")
    print("RUN", run.directory, flush=True)
    train, evaluation = SummaryWriter("runs"), SummaryWriter("runs/eval")  # announced once, at their first event
    for step in range(30_000):
        train.add_scalar("loss", step, step)
        evaluation.add_scalar("loss", -step, step)
    print("FIRST HALF", flush=True)
    sys.stdin.readline()  # the agent is killed meanwhile: what follows is only journaled
    for step in range(30_000, 40_000):
        train.add_scalar("loss", step, step)
        evaluation.add_scalar("loss", -step, step)
    train.close()
    evaluation.close()
    tracelet_otel.stop_logging()
    print("STOPPED", flush=True)
""")


def test_a_job_whose_journal_start_was_freed_is_replayed_exactly_once_after_its_agent_was_killed(
        mlflow_store, tmp_path):
    (tmp_path / "train.py").write_text(FREED_THEN_KILLED)
    with ProcessGroup([sys.executable, "train.py"], cwd=tmp_path, stdin=subprocess.PIPE) as job:
        run_dir = read_until(job, "RUN ").split(" ", 1)[1]
        read_until(job, "FIRST HALF")
        released = os.path.join(run_dir, "capture.journal.released")
        deadline = time.monotonic() + 60
        while not os.path.exists(released) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(released), "the agent never freed the journal's converted start"
        (agent,) = [pid for pid, command in processes_below(job.process.pid).items()
                    if "tracelet_otel.agent" in command]
        os.kill(agent, signal.SIGKILL)
        job.process.stdin.write("\n")
        job.process.stdin.flush()
        read_until(job, "STOPPED")
        job.wait(60)

    replayed = replay(tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    (run,) = mlflow_store.client.search_runs(["0"])
    points = mlflow_store.metric_points(run.info.run_id)
    assert sorted((key, step, value) for key, step, value, _ in points) == sorted(
        [("loss", step, float(step)) for step in range(40_000)]
        + [("eval/loss", step, float(-step)) for step in range(40_000)])
    assert set(points.values()) == {1}
    assert run.info.status == "FINISHED"
