"""Many ClearML runs at once through one bridge, into ClearML offline sessions, for each number of delivery
processes (``--delivery-processes``; 1 is one run at a time).

    .venv/bin/python benchmarks/bridge_clearml.py [--runs 100] [--scalars 1000] [--processes 1 2 4 8]

The load generator sends every run at once as their jobs' ``otlp`` backends would
(``tests.bridge_support.LoadGenerator``, 8 senders), each run's records and then its end. Time: from the first
request until every record is delivered and every run ended (the bridge's ``/health``, polled every 0.2 s).
Memory: the peak resident set of the bridge and its delivery processes. CPU: the bridge and its delivery
processes, and the load generator: everything shares the machine's cores.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import resident_mb

from tests.bridge_support import Bridge, LoadGenerator
from tests.support import processes_below

POLL_S = 0.2


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in [pid, *processes_below(pid)]:
        try:
            with open(f"/proc/{process}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return total


def through_bridge(directory: str, runs: int, scalars: int, processes: int) -> dict[str, float]:
    os.environ.update({"CLEARML_OFFLINE_MODE": "1", "CLEARML_CACHE_DIR": os.path.join(directory, "clearml-cache"),
                       "CLEARML_CONFIG_FILE": os.path.join(directory, "clearml.conf")})
    with open(os.environ["CLEARML_CONFIG_FILE"], "w"):
        pass
    bridge = Bridge(directory, "", "--delivery-processes", str(processes), backends=("clearml",))
    try:
        bridge.start()
        assert bridge.pid is not None
        load = LoadGenerator(runs, scalars, prefix=f"clearml-{processes}")
        began, bridge_cpu, generator_cpu = time.monotonic(), cpu_seconds(bridge.pid), time.process_time()
        load.send(bridge.grpc)
        generator_cpu = time.process_time() - generator_cpu
        peak_mb = 0.0
        while True:
            health = bridge.health()
            peak_mb = max(peak_mb, sum(resident_mb(pid) for pid in [bridge.pid, *processes_below(bridge.pid)]))
            if health["delivered"] == runs * scalars and health["runs_in_progress"] == 0:
                break
            time.sleep(POLL_S)
        return {"seconds": time.monotonic() - began, "peak_mb": peak_mb,
                "bridge_cpu": cpu_seconds(bridge.pid) - bridge_cpu, "generator_cpu": generator_cpu}
    finally:
        bridge.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--scalars", type=int, default=1000)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()
    print(f"{args.runs} ClearML runs of {args.scalars} scalars at once through one bridge, offline sessions")
    print(f"{'processes':>10} {'seconds':>8} {'records/s':>10} {'peak MB':>8} {'bridge CPU s':>13} "
          f"{'generator CPU s':>16}")
    for processes in args.processes:
        with tempfile.TemporaryDirectory(prefix="tracelet-bench-") as directory:
            figures = through_bridge(directory, args.runs, args.scalars, processes)
        print(f"{processes:>10} {figures['seconds']:>8.1f} {args.runs * args.scalars / figures['seconds']:>10.0f} "
              f"{figures['peak_mb']:>8.0f} {figures['bridge_cpu']:>13.1f} {figures['generator_cpu']:>16.1f}",
              flush=True)


if __name__ == "__main__":
    main()
