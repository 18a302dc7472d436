"""Training-thread cost of add_scalar with capture on, as a ratio to plain TensorBoard in the same process.

    .venv/bin/python benchmarks/add_scalar_overhead.py [--calls 20000] [--rounds 5]

Each round times the same loop with plain TensorBoard and with capture on (MLflow backend, a local sqlite
store in a temporary directory); the ratio of the medians is reported for torch and tensorboardX.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir  # noqa: E402

import tracelet_otel  # noqa: E402


def writer_class(library: str):
    if library == "torch":
        from torch.utils.tensorboard import SummaryWriter
    else:
        from tensorboardX import SummaryWriter
    return SummaryWriter


def time_loop(writer, calls: int) -> float:
    start = time.perf_counter()
    for step in range(calls):
        writer.add_scalar("loss", 1.0 / (step + 1), step)
    return (time.perf_counter() - start) / calls


def measure(library: str, calls: int, rounds: int, down: bool = False) -> dict[str, float]:
    SummaryWriter = writer_class(library)
    plain, captured = [], []
    for round_number in range(rounds):
        with tempfile.TemporaryDirectory() as logdir:
            writer = SummaryWriter(os.path.join(logdir, "plain"))
            plain.append(time_loop(writer, calls))
            writer.close()
            config = {"mlflow_tracking_uri": "http://127.0.0.1:9"} if down else {}
            tracelet_otel.start_logging(f"bench-{library}-{round_number}", "benchmarks", config=config) if not down \
                else _start_down(round_number)
            writer = SummaryWriter(os.path.join(logdir, "captured"))
            captured.append(time_loop(writer, calls))
            writer.close()
            tracelet_otel.stop_logging()
    ratio = statistics.median(captured) / statistics.median(plain)
    return {"plain_us": statistics.median(plain) * 1e6, "captured_us": statistics.median(captured) * 1e6,
            "ratio": ratio}


def _start_down(round_number: int) -> None:
    raise NotImplementedError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with temporary_workdir():
        for library in ("torch", "tensorboardX"):
            result = measure(library, args.calls, args.rounds)
            print(f"{library:13s} plain {result['plain_us']:6.1f} us/call  captured {result['captured_us']:6.1f} "
                  f"us/call  ratio {result['ratio']:.3f}x")


if __name__ == "__main__":
    main()
