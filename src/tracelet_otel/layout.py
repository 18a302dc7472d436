"""Where a run's files live, for the training job's runs and the bridge's alike.

A spool directory (``spool_dir``, default ``./.tracelet``; the bridge's ``--spool-dir``) holds one folder per run,
``runs/<run id>/``, with:

* ``run.json``: what the run is (:class:`tracelet_otel.runspec.RunSpec`); a job's runs only;
* ``capture.journal``: the events the training process captured; a job's runs only. A restarted job that
  continues its run (a ``run_id`` it chose) journals its n-th attempt into ``capture.<n>.journal``; each journal
  that had its converted start freed has ``<journal>.released`` beside it (``capture.journal``);
* ``agent.lock``: held by the agent delivering the run (beside training, or a replay);
* ``<backend>.spool.sqlite``: the records waiting for one backend, and its lock ``<backend>.spool.sqlite.lock``,
  held by the process delivering that spool;
* ``payloads/<sha256[:2]>/<sha256><ext>``: the run's default payload store (``tracelet_otel.payloads``).

A job's run folder is removed once everything in it is delivered, so whatever is left is owed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tracelet_otel._child import try_lock

__all__ = ["RunDirectory", "leftover_runs", "spool_lock_path"]

RUNS = "runs"
_JOURNAL = re.compile(r"capture(?:\.(\d+))?\.journal")


@dataclass(frozen=True)
class RunDirectory:
    path: str

    @classmethod
    def of(cls, spool_dir: str, run_id: str) -> RunDirectory:
        return cls(os.path.join(os.path.abspath(spool_dir), RUNS, run_id))

    @property
    def run_id(self) -> str:
        return os.path.basename(self.path)

    @property
    def spec(self) -> str:
        return os.path.join(self.path, "run.json")

    def journal(self, attempt: int = 1) -> str:
        """The journal of the run's ``attempt``-th ``start_logging`` (1 unless a restarted job continues it)."""
        return os.path.join(self.path, "capture.journal" if attempt == 1 else f"capture.{attempt}.journal")

    @staticmethod
    def journal_source(attempt: int) -> str:
        """The name a run's spools record their position in the attempt's journal under
        (``SourcePosition.source``)."""
        return "journal" if attempt == 1 else f"journal.{attempt}"

    def journals(self) -> dict[int, str]:
        """The run's journals by attempt, oldest first."""
        found = {}
        for name in os.listdir(self.path) if os.path.isdir(self.path) else []:
            match = _JOURNAL.fullmatch(name)
            if match:
                found[int(match.group(1) or 1)] = os.path.join(self.path, name)
        return dict(sorted(found.items()))

    @property
    def lock(self) -> str:
        return os.path.join(self.path, "agent.lock")

    @property
    def payloads(self) -> str:
        return os.path.join(self.path, "payloads")

    def spool(self, backend: str) -> str:
        return os.path.join(self.path, f"{backend}.spool.sqlite")

    def is_busy(self) -> bool:
        """Whether an agent is delivering the run right now."""
        lock = try_lock(self.lock)
        if lock is None:
            return True
        lock.close()
        return False


def spool_lock_path(spool_path: str) -> str:
    """The lock held by the one process that delivers a spool."""
    return spool_path + ".lock"


def runs_in(spool_dir: str) -> list[RunDirectory]:
    """Every run folder under ``spool_dir``, in the order of their ids."""
    root = os.path.join(os.path.abspath(spool_dir), RUNS)
    if not os.path.isdir(root):
        return []
    return [RunDirectory(os.path.join(root, name)) for name in sorted(os.listdir(root))]


def leftover_runs(spool_dir: str) -> list[RunDirectory]:
    """A job's runs under ``spool_dir`` that still hold something to deliver and no agent is working on."""
    return [run for run in runs_in(spool_dir) if os.path.exists(run.spec) and not run.is_busy()]
