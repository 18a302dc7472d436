"""Importing a logdir with ``tracelet-otel sync``, beside the ceiling (MLflow's own ``log_batch`` of the same points)
and TensorBoard's own time to read the same files, in the same run.

    .venv/bin/python benchmarks/sync_import.py [--scalars 1000000] [--runs 10] [--tags 10]

The logdir holds ``--runs`` runs of ``--tags`` tags, ``--scalars`` points in all, written by torch's
``SummaryWriter``. "sync" is ``tracelet-otel sync LOGDIR --backend mlflow`` into a fresh sqlite store, from start
to every point in MLflow; "log_batch" writes the same points (key, step, value, wall time) into another fresh
sqlite store, 1000 a call, one run after the other; "TensorBoard reads" is ``EventAccumulator`` keeping every
point (``size_guidance`` 0). The ratio is sync's points per second over log_batch's: 1.0 would be the ceiling.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

BATCH = 1000


def write_logdir(logdir: str, runs: int, tags: int, points: int) -> list[tuple[str, str, int, float, int]]:
    """The logdir, and every point as (run, tag, step, value, wall time in ms) as TensorBoard stored it."""
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    per_tag = points // (runs * tags)
    written = []
    for run in range(runs):
        with SummaryWriter(os.path.join(logdir, f"run{run}"), max_queue=10_000) as writer:
            for step in range(per_tag):
                wall_time = 1_700_000_000.0 + step / 100
                for tag in range(tags):
                    value = float(np.float32(step * 0.001 + tag))
                    writer.add_scalar(f"metric{tag}", value, step, walltime=wall_time)
                    written.append((f"run{run}", f"metric{tag}", step, value, int(wall_time * 1000)))
    return written


def tensorboard_read_s(logdir: str, runs: int) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    started = time.perf_counter()
    for run in range(runs):
        EventAccumulator(os.path.join(logdir, f"run{run}"), size_guidance={"scalars": 0}).Reload()
    return time.perf_counter() - started


def sync_s(logdir: str, uri: str) -> float:
    command = [os.path.join(os.path.dirname(sys.executable), "tracelet-otel"), "sync", logdir, "--backend", "mlflow",
               "--project", "imported"]
    started = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def log_batch_s(points: list[tuple[str, str, int, float, int]], uri: str) -> float:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment("raw")
    runs: dict[str, str] = {}
    started = time.perf_counter()
    for start in range(0, len(points), BATCH):
        batch = points[start : start + BATCH]
        run = batch[0][0]
        if run not in runs:
            runs[run] = client.create_run(experiment, run_name=run).info.run_id
        client.log_batch(runs[run], metrics=[Metric(tag, value, wall_ms, step) for _, tag, step, value, wall_ms
                                             in batch])
    return time.perf_counter() - started


def stored(uri: str) -> int:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("imported")
    return sum(len(client.get_metric_history(run.info.run_id, key))
               for run in client.search_runs([experiment.experiment_id]) for key in run.data.metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scalars", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--tags", type=int, default=10)
    args = parser.parse_args()
    with temporary_workdir() as directory:
        logdir = os.path.join(directory, "logs")
        points = write_logdir(logdir, args.runs, args.tags, args.scalars)
        size_mb = sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(logdir)
                      for name in names) / 1e6
        read = tensorboard_read_s(logdir, args.runs)
        raw = log_batch_s(points, f"sqlite:///{directory}/raw.db")
        imported = sync_s(logdir, f"sqlite:///{directory}/synced.db")
        assert stored(f"sqlite:///{directory}/synced.db") == len(points)
    print(f"{len(points)} scalars in {args.runs} runs x {args.tags} tags, {size_mb:.1f} MB of event files")
    print(f"TensorBoard reads them (EventAccumulator, every point): {read:.1f} s, {len(points) / read:,.0f}/s")
    print(f"MLflow log_batch of the same points (the ceiling):     {raw:.1f} s, {len(points) / raw:,.0f}/s")
    print(f"tracelet-otel sync, files to MLflow:                    {imported:.1f} s, {len(points) / imported:,.0f}/s"
          f" = {raw / imported:.2f}x of log_batch")


if __name__ == "__main__":
    main()
