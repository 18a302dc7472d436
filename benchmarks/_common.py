"""Shared by the benchmarks: a throw-away working directory (so MLflow's default store lands there), and the
resident memory of processes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def temporary_workdir() -> Iterator[str]:
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tracelet-bench-") as directory:
        os.chdir(directory)
        try:
            yield directory
        finally:
            os.chdir(previous)

SAMPLE_EVERY_S = 0.2
_ROLES = {"tracelet_otel.agent": "agent", "tracelet_otel.delivery": "delivery worker"}


def resident_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # gone meanwhile
        pass
    return 0.0


class HelperMemory(threading.Thread):
    """Peak resident memory of each process below this one, by role: our agent and delivery worker, and what
    they start in turn."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb: dict[str, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        from tests.support import processes_below

        while not self._done.wait(SAMPLE_EVERY_S):
            for pid, command in processes_below(os.getpid()).items():
                if not command:  # exiting: no command line, no memory
                    continue
                # Anything else below is a tracker's own helper (W&B's wandb-core), named by its program.
                role = next((role for module, role in _ROLES.items() if module in command),
                            os.path.basename(command.split(" ", 1)[0]))
                self.peak_mb[role] = max(self.peak_mb.get(role, 0.0), resident_mb(pid))

    def stop(self) -> dict[str, float]:
        self._done.set()
        self.join()
        return self.peak_mb
