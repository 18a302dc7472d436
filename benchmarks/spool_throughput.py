"""Spool throughput (records/s appended and drained) beside MLflow's own log_batch rate, in the same run.

    .venv/bin/python benchmarks/spool_throughput.py [--records 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

from tracelet_otel.delivery import Spool
from tracelet_otel.records import Record, RecordKind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    records = [Record(RecordKind.SCALAR, "train/loss", step, 1.7e9 + step, "train", "loss", 1.0 / (step + 1))
               for step in range(args.records)]
    with temporary_workdir() as directory:
        spool = Spool(os.path.join(directory, "spool.sqlite"))
        start = time.perf_counter()
        for first in range(0, len(records), 256):  # the agent appends one span's events at a time
            spool.append(records[first : first + 256])
        appended = time.perf_counter() - start

        start = time.perf_counter()
        while batch := spool.pending(1000):  # the sender reads MLflow-sized batches
            spool.mark_delivered(batch[-1][0])
        drained = time.perf_counter() - start

        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{directory}/mlflow.db")
        run_id = client.create_run(client.create_experiment("throughput")).info.run_id
        start = time.perf_counter()
        for first in range(0, len(records), 1000):
            client.log_batch(run_id, metrics=[Metric(r.tag, r.value, int(r.wall_time * 1000), r.step)
                                              for r in records[first : first + 1000]])
        logged = time.perf_counter() - start
    for name, seconds in (("spool append", appended), ("spool drain", drained), ("MLflow log_batch", logged)):
        print(f"{name:16s} {args.records / seconds:10,.0f} records/s")


if __name__ == "__main__":
    main()
