"""What a run is, written into its directory (``tracelet_otel.layout``): the agent and ``tracelet-otel replay``
read it back."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from tracelet_otel._backend import RunInfo
from tracelet_otel.config import Options

__all__ = ["RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    exp_name: str
    project: str | None
    backends: tuple[str, ...]
    options: Options
    rank: int | None = None
    source: dict[str, Any] | None = None  # the training process (tracelet_otel.provenance)
    attempt: int = 1  # which start_logging of this run this is: a restarted job continues its run_id

    @property
    def info(self) -> RunInfo:
        return RunInfo(self.run_id, self.exp_name, self.project, self.rank, self.source,
                       resumable=self.options.run_id is not None)

    def save(self, path: str) -> None:
        body = dataclasses.asdict(self)
        with open(path, "w") as file:
            json.dump(body, file, indent=1)

    @classmethod
    def load(cls, path: str) -> RunSpec:
        with open(path) as file:
            body: dict[str, Any] = json.load(file)
        body["options"] = Options(**body["options"])
        body["backends"] = tuple(body["backends"])
        return cls(**body)

