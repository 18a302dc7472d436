"""Records/s through the collector route (job -> rotel -> bridge -> MLflow) beside in-process delivery
(job -> MLflow) in the same run, and the bridge's memory under that load.

    .venv/bin/python benchmarks/collector_throughput.py [--scalars 50000] [--rounds 1]

Both sides log the same scalars with torch's SummaryWriter into a fresh sqlite MLflow store of their own. The
time runs from the first add_scalar until every point is in MLflow and the run is ended: for the route, until
the bridge reports them delivered and the MLflow run is FINISHED. Memory is the resident set of the bridge
process and of its MLflow delivery process, sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import SAMPLE_EVERY_S, resident_mb, temporary_workdir
from end_to_end import captured as in_process
from end_to_end import tensorboard_loop

import tracelet_otel
from tests.bridge_support import Bridge, Collector, mlflow_run, wait_until
from tests.support import MlflowStore, processes_below


class MemorySampler(threading.Thread):
    """Peak resident memory of a process and, apart, of its children."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self._pid = pid
        self.peak_process = self.peak_children = 0.0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY_S):
            self.peak_process = max(self.peak_process, resident_mb(self._pid))
            self.peak_children = max(self.peak_children, sum(resident_mb(pid) for pid in processes_below(self._pid)))

    def stop(self) -> None:
        self._done.set()
        self.join()


def collector_route(scalars: int, directory: str) -> tuple[float, MemorySampler]:
    store = MlflowStore(f"sqlite:///{os.path.join(directory, 'route.db')}")
    bridge = Bridge(directory, store.uri).start()
    collector = Collector(directory, bridge.grpc).start()
    assert bridge.pid is not None
    sampler = MemorySampler(bridge.pid)
    sampler.start()
    try:
        run = tracelet_otel.start_logging("route", "benchmarks", backend="otlp",
                                          config={"otlp_endpoint": collector.grpc, "stop_timeout": 3600,
                                                  "artifact_store": os.path.join(directory, "payloads")})
        start = time.perf_counter()
        tensorboard_loop("runs/route", scalars)
        tracelet_otel.stop_logging()
        wait_until(lambda: bridge.health()["delivered"] >= scalars, 3600, "the bridge to deliver everything")
        wait_until(lambda: mlflow_run(store, run.run_id).info.status == "FINISHED", 600, "the run to end")
        elapsed = time.perf_counter() - start
    finally:
        collector.kill()
        bridge.kill()
        sampler.stop()
    return elapsed, sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalars", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.rounds):
        with temporary_workdir():
            direct = in_process(args.scalars).total
        with temporary_workdir() as directory:
            routed, memory = collector_route(args.scalars, directory)
        print(f"{args.scalars} scalars: in-process {direct:6.1f} s ({args.scalars / direct:,.0f} records/s), "
              f"collector route {routed:6.1f} s ({args.scalars / routed:,.0f} records/s), ratio {routed / direct:.2f}x")
        print(f"bridge memory under that load (peak RSS): bridge {memory.peak_process:.0f} MB, "
              f"its delivery process {memory.peak_children:.0f} MB")


if __name__ == "__main__":
    main()
