"""Training-thread cost of add_scalar with capture on, as a ratio to plain TensorBoard in the same process.

    .venv/bin/python benchmarks/add_scalar_overhead.py [--calls 20000] [--rounds 5]

Each round times the same loop with plain TensorBoard and with capture on (MLflow backend, a local sqlite
store in a temporary directory); the ratio of the medians is reported for torch and tensorboardX, by wall
time (what training feels, but noisy on a shared 2-core machine) and by the training thread's CPU time
(stable; it leaves out waiting for a core or the GIL).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

import tracelet_otel


def writer_class(library: str):
    if library == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter
    return SummaryWriter


def time_loop(writer, calls: int) -> tuple[float, float]:
    """Wall time and the training thread's own CPU time per call."""
    start, start_cpu = time.perf_counter(), time.thread_time()
    for step in range(calls):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    return (time.perf_counter() - start) / calls, (time.thread_time() - start_cpu) / calls


def measure(library: str, calls: int, rounds: int, config: dict[str, object]) -> dict[str, float]:
    """Rounds alternate which side goes first: the first loop of a pair runs measurably slower either way."""
    SummaryWriter = writer_class(library)
    times: dict[str, list[tuple[float, float]]] = {"plain": [], "captured": []}
    for round_number in range(rounds):
        order = ("plain", "captured") if round_number % 2 == 0 else ("captured", "plain")
        with tempfile.TemporaryDirectory() as logdir:
            for side in order:
                if side == "captured":
                    tracelet_otel.start_logging(f"bench-{library}-{round_number}", "benchmarks", config=config)
                writer = SummaryWriter(os.path.join(logdir, side))
                times[side].append(time_loop(writer, calls))
                writer.close()
                if side == "captured":
                    tracelet_otel.stop_logging()
    result = {}
    for index, clock in enumerate(("wall", "cpu")):
        plain = statistics.median(sample[index] for sample in times["plain"])
        captured = statistics.median(sample[index] for sample in times["captured"])
        result[clock] = (plain * 1e6, captured * 1e6, captured / plain)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with temporary_workdir():
        for library in ("torch", "tensorboardX"):
            result = measure(library, args.calls, args.rounds, {})
            for clock, (plain, captured, ratio) in result.items():
                print(f"{library:13s} {clock:4s} plain {plain:6.1f} us/call  captured {captured:6.1f} us/call  "
                      f"ratio {ratio:.3f}x")


if __name__ == "__main__":
    main()
