"""End to end into each tracker: N scalars from the first add_scalar until stop_logging() returns with all of
them delivered, for MLflow (sqlite store), W&B (offline) and ClearML (offline), beside W&B's own
``sync_tensorboard`` (until ``wandb.finish()`` returns) measured in the same run.

    .venv/bin/python benchmarks/trackers_end_to_end.py [--scalars 100000] [--cases mlflow wandb clearml wandb-sync]

Each case runs in a fresh process and a throw-away directory, so no tracker's state or patching leaks into the
next. W&B and ClearML run offline: no network. For our cases the peak resident memory of the helper processes
(the agent and the backend's delivery worker) is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(__file__))
from _common import HelperMemory, temporary_workdir

CASES = ("mlflow", "wandb", "clearml", "wandb-sync")


def tensorboard_loop(scalars: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter("runs/bench")
    for step in range(scalars):
        writer.add_scalar(f"loss/{step % 10}", 1.0 / (step + 1), step // 10)
    writer.close()


def ours(backend: str, scalars: int) -> dict[str, Any]:
    import tracelet_otel

    memory = HelperMemory()
    memory.start()
    tracelet_otel.start_logging("end-to-end", "benchmarks", backend=backend, config={"stop_timeout": 3600})
    start = time.perf_counter()
    tensorboard_loop(scalars)
    run = tracelet_otel.stop_logging()
    elapsed = time.perf_counter() - start
    assert run is not None and run.delivery[backend].delivered == scalars, run.delivery
    return {"seconds": elapsed, "helpers_mb": memory.stop()}


def wandb_sync(scalars: int) -> dict[str, Any]:
    import wandb

    wandb.init(project="benchmarks", name="sync-tensorboard", sync_tensorboard=True)
    start = time.perf_counter()
    tensorboard_loop(scalars)
    wandb.finish()
    return {"seconds": time.perf_counter() - start}


def run_case(case: str, scalars: int) -> dict[str, Any]:
    """One case in a process of its own; returns its seconds (and our helpers' peak memory)."""
    with temporary_workdir() as directory:
        (open(os.path.join(directory, "clearml.conf"), "w")).close()
        environment = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": directory, "WANDB_SILENT": "true",
                       "CLEARML_OFFLINE_MODE": "1", "CLEARML_CACHE_DIR": os.path.join(directory, "clearml"),
                       "CLEARML_CONFIG_FILE": os.path.join(directory, "clearml.conf"),
                       "MLFLOW_TRACKING_URI": f"sqlite:///{directory}/mlflow.db"}
        result = subprocess.run([sys.executable, os.path.abspath(__file__), "--scalars", str(scalars),
                                 "--one", case], env=environment, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{case} failed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scalars", type=int, default=100_000)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)  # the child process of one case
    args = parser.parse_args()
    if args.one:
        print(json.dumps(wandb_sync(args.scalars) if args.one == "wandb-sync" else ours(args.one, args.scalars)))
        return
    results = {case: run_case(case, args.scalars) for case in args.cases}
    times = {case: result["seconds"] for case, result in results.items()}
    for case, result in results.items():
        seconds = result["seconds"]
        memory = "".join(f", {role} {mb:.0f} MB" for role, mb in result.get("helpers_mb", {}).items())
        print(f"{args.scalars} scalars -> {case:11s} {seconds:6.1f} s  ({args.scalars / seconds:8,.0f} scalars/s)"
              + (f"  peak RSS{memory[1:]}" if memory else ""))
    if "wandb-sync" in times and "wandb" in times:
        print(f"tracelet-otel to W&B / W&B's own sync_tensorboard: {times['wandb'] / times['wandb-sync']:.2f}x")


if __name__ == "__main__":
    main()
