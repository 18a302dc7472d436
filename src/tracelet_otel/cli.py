"""``tracelet-otel``: the command line.

``tracelet-otel replay [SPOOL_DIR]`` delivers what earlier runs left behind (default ``./.tracelet``): records
journaled but never converted because the agent died, and records spooled but not delivered because the
backend was down past ``stop_timeout``. Each run is delivered into the very backend run it started, exactly
once, with a progress bar, and ended ``FINISHED`` if training had called ``stop_logging``, else ``KILLED``.
Runs another process is still delivering are left alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from tracelet_otel._child import try_lock
from tracelet_otel.agent import LOCK_NAME, Agent, AgentBusy
from tracelet_otel.runspec import SPEC_NAME

__all__ = ["leftover_runs", "main"]

_BAR_WIDTH = 30


def leftover_runs(spool_dir: str) -> list[str]:
    """Run directories under ``spool_dir`` that still hold something to deliver and no agent is working on.

    A run's directory is removed once everything was delivered, so whatever is left is owed.
    """
    runs = os.path.join(spool_dir, "runs")
    if not os.path.isdir(runs):
        return []
    return sorted(os.path.join(runs, name) for name in os.listdir(runs)
                  if os.path.exists(os.path.join(runs, name, SPEC_NAME)) and not _busy(os.path.join(runs, name)))


def _busy(run_dir: str) -> bool:
    lock = try_lock(os.path.join(run_dir, LOCK_NAME))
    if lock is None:
        return True
    lock.close()
    return False


class _ProgressBar:
    def __init__(self, run_id: str) -> None:
        self._run_id = run_id
        self._total: dict[str, int] = {}

    def __call__(self, undelivered: dict[str, int]) -> None:
        for name, count in undelivered.items():
            self._total[name] = max(self._total.get(name, 0), count)
        parts = []
        for name, count in undelivered.items():
            total = self._total[name] or 1
            done = total - count
            filled = _BAR_WIDTH * done // total
            parts.append(f"{name} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{self._total[name]}")
        print(f"\r{self._run_id[:12]} " + "  ".join(parts), end="", file=sys.stderr, flush=True)


def replay(spool_dir: str, timeout: float) -> int:
    """Deliver every leftover run; the exit status is 0 when everything was delivered."""
    failures = 0
    runs = leftover_runs(spool_dir)
    if not runs:
        print(f"tracelet-otel: nothing to replay in {spool_dir}", file=sys.stderr)
    for run_dir in runs:
        run_id = os.path.basename(run_dir)
        try:
            agent = Agent(run_dir)
        except AgentBusy as busy:  # started between the listing and now
            print(f"tracelet-otel: {busy}; skipped", file=sys.stderr)
            continue
        except Exception as error:  # the backend is unreachable: try again later
            print(f"tracelet-otel: run {run_id}: {error}", file=sys.stderr)
            failures += 1
            continue
        agent.follow(until_end=False)
        summary = agent.finish(timeout, _ProgressBar(run_id))
        print(file=sys.stderr)
        for name, report in summary["backends"].items():
            state = "delivered" if report["undelivered"] == 0 else f"{report['undelivered']} still undelivered"
            print(f"tracelet-otel: run {run_id} -> {name} {report['run']}: {state}, "
                  f"ended {report['finished'] or 'not yet'}", file=sys.stderr)
            failures += report["undelivered"] > 0
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tracelet-otel", description="tracelet-otel command line")
    commands = parser.add_subparsers(dest="command", required=True)
    replay_parser = commands.add_parser("replay", help="deliver what earlier runs left in a spool directory")
    replay_parser.add_argument("spool_dir", nargs="?", default=".tracelet", help="default: ./.tracelet")
    replay_parser.add_argument("--timeout", type=float, default=3600.0,
                               help="seconds to keep trying per run (default: 3600)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return replay(args.spool_dir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
