"""What a run is, written next to its journal: the agent and ``tracelet-otel replay`` read it back."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from tracelet_otel.backends import RunInfo
from tracelet_otel.config import Options

__all__ = ["JOURNAL_NAME", "SPEC_NAME", "RunSpec", "spool_path"]

SPEC_NAME = "run.json"
JOURNAL_NAME = "capture.journal"


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    exp_name: str
    project: str | None
    backends: tuple[str, ...]
    options: Options
    rank: int | None = None
    source: dict[str, Any] | None = None  # the training process (tracelet_otel.provenance)

    @property
    def info(self) -> RunInfo:
        return RunInfo(self.run_id, self.exp_name, self.project, self.rank, self.source)

    def save(self, directory: str) -> None:
        body = dataclasses.asdict(self)
        with open(os.path.join(directory, SPEC_NAME), "w") as file:
            json.dump(body, file, indent=1)

    @classmethod
    def load(cls, directory: str) -> RunSpec:
        with open(os.path.join(directory, SPEC_NAME)) as file:
            body: dict[str, Any] = json.load(file)
        body["options"] = Options(**body["options"])
        body["backends"] = tuple(body["backends"])
        return cls(**body)


def spool_path(directory: str, backend: str) -> str:
    return os.path.join(directory, f"{backend}.spool.sqlite")
