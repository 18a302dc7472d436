"""Training-thread cost of add_scalar with capture on, as a ratio to plain TensorBoard in the same process.

    .venv/bin/python benchmarks/add_scalar_overhead.py [--calls 20000] [--rounds 9]

Each round times the same loop with plain TensorBoard and with capture on (MLflow backend, a local sqlite
store in a temporary directory); the median of the rounds' ratios (and their range) is reported for torch and
tensorboardX, by wall
time (what training feels, but noisy on a shared 2-core machine) and by the training thread's CPU time
(it leaves out waiting for a core or the GIL).

A third loop runs with capture on and our helper processes paused (SIGSTOP) while it runs: the cost of the
capture in the training process alone, apart from what the helpers' work on the other core does to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

import tracelet_otel
from tests.support import processes_below

SIDES = ("plain", "captured", "paused")


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


@contextlib.contextmanager
def helpers_paused() -> Iterator[None]:
    helpers = list(processes_below(os.getpid()))
    for pid in helpers:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in helpers:
            os.kill(pid, signal.SIGCONT)


def measure(library: str, calls: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per clock and side, the us/call of each round. Rounds rotate the order of the sides, so that each side
    runs first, second and last equally often: where a loop stands in its round moves it by more than the
    capture does."""
    SummaryWriter = writer_class(library)
    times: dict[str, dict[str, list[float]]] = {clock: {side: [] for side in SIDES} for clock in ("wall", "cpu")}
    for round_number in range(rounds):
        shift = round_number % len(SIDES)
        order = SIDES[shift:] + SIDES[:shift]
        with tempfile.TemporaryDirectory() as logdir:
            for side in order:
                if side != "plain":
                    tracelet_otel.start_logging(f"bench-{library}-{round_number}-{side}", "benchmarks")
                writer = SummaryWriter(os.path.join(logdir, side))
                with helpers_paused() if side == "paused" else contextlib.nullcontext():
                    wall, cpu = time_loop(writer, calls)
                times["wall"][side].append(wall * 1e6)
                times["cpu"][side].append(cpu * 1e6)
                writer.close()
                if side != "plain":
                    tracelet_otel.stop_logging()
    return times


def ratio(sides: dict[str, list[float]], side: str) -> str:
    """The median of the rounds' ratios to plain (each against the plain loop of its own round), and their range."""
    ratios = sorted(value / plain for value, plain in zip(sides[side], sides["plain"], strict=True))
    return f"{statistics.median(sides[side]):6.1f} ({statistics.median(ratios):.3f}x, {ratios[0]:.2f}-{ratios[-1]:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    with temporary_workdir():
        for library in ("torch", "tensorboardX"):
            for clock, sides in measure(library, args.calls, args.rounds).items():
                print(f"{library:13s} {clock:4s} plain {statistics.median(sides['plain']):6.1f} us/call  "
                      f"captured {ratio(sides, 'captured')}  helpers paused {ratio(sides, 'paused')}")

if __name__ == "__main__":
    main()
