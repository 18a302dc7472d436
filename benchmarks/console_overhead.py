"""What capturing the console costs the training loop: N prints with ``capture_console`` on, beside the same
prints in a run with it off, in the same round, and until ``stop_logging`` returns with every line delivered.

    .venv/bin/python benchmarks/console_overhead.py [--lines 100000] [--rounds 3]

Each round runs a child process twice, its stdout a pipe this process drains (as a CI log or ``tee`` would):
once with ``capture_console`` off, once on, into a local MLflow store (``console.log``). It prints the time of
the print loop alone and from the first print until ``stop_logging`` returns, and the ratios on/off.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(__file__))
from _common import temporary_workdir

CHILD = textwrap.dedent("""
    import sys, time
    import tracelet_otel

    lines = int(sys.argv[1])
    tracelet_otel.start_logging("console-bench", backend="mlflow")
    started = time.perf_counter()
    for line in range(lines):
        print(f"step {line}: loss {1.0 / (line + 1):.6f}")
    sys.stdout.flush()
    printed = time.perf_counter()
    tracelet_otel.stop_logging()
    stopped = time.perf_counter()
    print(f"TIMES {printed - started} {stopped - started}", file=sys.stderr)
""")


def one(lines: int, capture: bool) -> tuple[float, float]:
    environment = {**os.environ, "TRACELET_CAPTURE_CONSOLE": "true" if capture else "false"}
    done = subprocess.run([sys.executable, "child.py", str(lines)], capture_output=True, text=True, env=environment,
                          check=True)
    loop, until_stop = done.stderr.rsplit("TIMES ", 1)[1].split()
    return float(loop), float(until_stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loops, totals = [], []
    with temporary_workdir() as directory:
        with open(os.path.join(directory, "child.py"), "w") as file:
            file.write(CHILD)
        for round_number in range(args.rounds):
            off_loop, off_total = one(args.lines, capture=False)
            on_loop, on_total = one(args.lines, capture=True)
            loops.append(on_loop / off_loop)
            totals.append(on_total / off_total)
            print(f"round {round_number + 1}: {args.lines} prints, loop {off_loop:.2f} s off / {on_loop:.2f} s on "
                  f"= {loops[-1]:.2f}x; until stop_logging returns {off_total:.2f} s / {on_total:.2f} s "
                  f"= {totals[-1]:.2f}x")
    print(f"median: loop {statistics.median(loops):.2f}x, until stop {statistics.median(totals):.2f}x")


if __name__ == "__main__":
    main()
