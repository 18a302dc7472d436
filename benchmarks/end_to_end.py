"""End to end: N scalars, from the first add_scalar until stop_logging() returns with all of them in MLflow,
as a ratio to plain TensorBoard plus the same points written with MLflow's own log_batch.

    .venv/bin/python benchmarks/end_to_end.py [--scalars 100000] [--rounds 1]

Both sides use a fresh local MLflow store (sqlite) in a temporary directory, in the same process and run.
A ratio below 1 means export overlaps training instead of adding to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

import tracelet_otel


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


def baseline(scalars: int) -> float:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{os.path.abspath('baseline.db')}")
    run_id = client.create_run(client.create_experiment("baseline")).info.run_id
    start = time.perf_counter()
    points = tensorboard_loop("runs/baseline", scalars)
    for first in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=[Metric("loss", value, int(wall_time * 1000), step)
                                          for step, value, wall_time in points[first : first + 1000]])
    return time.perf_counter() - start


def captured(scalars: int) -> float:
    tracelet_otel.start_logging("end-to-end", "benchmarks",
                                config={"mlflow_tracking_uri": f"sqlite:///{os.path.abspath('captured.db')}",
                                        "stop_timeout": 3600})
    start = time.perf_counter()
    tensorboard_loop("runs/captured", scalars)
    run = tracelet_otel.stop_logging()
    elapsed = time.perf_counter() - start
    assert run is not None and run.delivery["mlflow"]["delivered"] == scalars, run
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalars", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    ratios = []
    for _ in range(args.rounds):
        with temporary_workdir():
            plain = baseline(args.scalars)
        with temporary_workdir():
            ours = captured(args.scalars)
        ratios.append(ours / plain)
        print(f"{args.scalars} scalars: TensorBoard + log_batch {plain:6.1f} s, tracelet-otel {ours:6.1f} s, "
              f"ratio {ours / plain:.2f}x")
    print(f"median ratio {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
