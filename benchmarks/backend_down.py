"""add_scalar cost while the tracking server is down, as a ratio to plain TensorBoard in the same process.

    .venv/bin/python benchmarks/backend_down.py [--calls 20000] [--rounds 4]

Each round starts a real ``mlflow server`` on 127.0.0.1, starts logging to it, SIGKILLs the server, and times
the loop (records go to the spool, delivery retries with backoff); the plain loop runs in the same round,
first in every other round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir
from add_scalar_overhead import time_loop, writer_class

import tracelet_otel
from tests.conftest import MlflowServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    SummaryWriter = writer_class("torch")
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "backend down": []}
    with temporary_workdir() as directory:
        server = MlflowServer(directory)
        for round_number in range(args.rounds):
            order = ("plain", "backend down") if round_number % 2 == 0 else ("backend down", "plain")
            with tempfile.TemporaryDirectory() as logdir:
                for side in order:
                    if side == "backend down":
                        server.start()
                        tracelet_otel.start_logging(f"down-{round_number}", "benchmarks", config={
                            "mlflow_tracking_uri": server.uri, "stop_timeout": 1})
                        server.kill()
                    writer = SummaryWriter(os.path.join(logdir, side.replace(" ", "-")))
                    times[side].append(time_loop(writer, args.calls))
                    writer.close()
                    if side == "backend down":
                        tracelet_otel.stop_logging()  # leaves the records in the spool, with a warning
    for index, clock in enumerate(("wall", "cpu")):
        plain = statistics.median(sample[index] for sample in times["plain"])
        down = statistics.median(sample[index] for sample in times["backend down"])
        print(f"torch {clock:4s} plain {plain * 1e6:6.1f} us/call  backend down {down * 1e6:6.1f} us/call  "
              f"ratio {down / plain:.3f}x")


if __name__ == "__main__":
    main()
