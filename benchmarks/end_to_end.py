"""End to end: N scalars, from the first add_scalar until stop_logging() returns with all of them in MLflow,
as a ratio to plain TensorBoard plus the same points written with MLflow's own log_batch.

    .venv/bin/python benchmarks/end_to_end.py [--scalars 100000] [--rounds 1]

Both sides use a fresh local MLflow store (sqlite) in a temporary directory, in the same process and run.
A ratio below 1 means export overlaps training instead of adding to it.

Each round also prints the floor that round's own figures put under the ratio. Delivery is one stream of the
same log_batch calls the baseline makes, so we can never finish before the baseline's log_batch time; and the
work of all processes (training, capture, conversion, delivery: CPU seconds from /proc and getrusage) must fit
on the machine's cores. The floor is the larger of the two, divided by the baseline.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

import tracelet_otel
from tests.support import processes_below


class Baseline(NamedTuple):
    tensorboard: float  # the training loop, s
    log_batch: float  # the same points into MLflow, s

    @property
    def total(self) -> float:
        return self.tensorboard + self.log_batch


class Captured(NamedTuple):
    total: float  # first add_scalar until stop_logging returned, s
    cpu: float  # CPU seconds of every process meanwhile: training and our helpers


def tensorboard_loop(logdir: str, scalars: int) -> list[tuple[int, float, float]]:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(logdir)
    points = []
    for step in range(scalars):
        value = 1.0 / (step + 1)
        writer.add_scalar("loss", value, step)
        points.append((step, value, time.time()))
    writer.close()
    return points


def baseline(scalars: int) -> Baseline:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{os.path.abspath('baseline.db')}")
    run_id = client.create_run(client.create_experiment("baseline")).info.run_id
    start = time.perf_counter()
    points = tensorboard_loop("runs/baseline", scalars)
    trained = time.perf_counter()
    for first in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=[Metric("loss", value, int(wall_time * 1000), step)
                                          for step, value, wall_time in points[first : first + 1000]])
    return Baseline(trained - start, time.perf_counter() - trained)


def captured(scalars: int) -> Captured:
    before = _children_cpu()
    tracelet_otel.start_logging("end-to-end", "benchmarks",
                                config={"mlflow_tracking_uri": f"sqlite:///{os.path.abspath('captured.db')}",
                                        "stop_timeout": 3600})
    helpers_at_start = sum(_cpu(pid) for pid in processes_below(os.getpid()))  # their start-up is not timed
    start, start_cpu = time.perf_counter(), time.process_time()
    tensorboard_loop("runs/captured", scalars)
    run = tracelet_otel.stop_logging()
    elapsed = time.perf_counter() - start
    assert run is not None and run.delivery["mlflow"].delivered == scalars, run
    helpers = _children_cpu() - before - helpers_at_start  # they have exited and been waited for
    return Captured(elapsed, time.process_time() - start_cpu + helpers)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalars", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    ratios = []
    cores = len(os.sched_getaffinity(0))
    for _ in range(args.rounds):
        with temporary_workdir():
            plain = baseline(args.scalars)
        with temporary_workdir():
            ours = captured(args.scalars)
        ratios.append(ours.total / plain.total)
        floor = max(plain.log_batch, ours.cpu / cores)
        print(f"{args.scalars} scalars: TensorBoard {plain.tensorboard:5.1f} s + log_batch {plain.log_batch:5.1f} s "
              f"= {plain.total:5.1f} s; tracelet-otel {ours.total:5.1f} s, ratio {ours.total / plain.total:.2f}x; "
              f"floor {floor / plain.total:.2f}x (log_batch {plain.log_batch:.1f} s, "
              f"{ours.cpu:.1f} CPU s on {cores} cores = {ours.cpu / cores:.1f} s)")
    print(f"median ratio {statistics.median(ratios):.2f}x")

if __name__ == "__main__":
    main()
