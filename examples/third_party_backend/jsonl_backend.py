"""A tracelet-otel backend in a few dozen lines: every record as a JSON line, one file per run.

Register it in your package's ``pyproject.toml`` and it is a backend like MLflow's:

    [project.entry-points.tracelet_otel_backends]
    jsonl = "jsonl_backend:JsonLinesBackend"

    tracelet_otel.start_logging("baseline", "my_project", backend=["mlflow", "jsonl"],
                                config={"jsonl_directory": "logs"})

Spooling, batching, retry and replay are tracelet-otel's; the backend says how to translate records (a pure
function), how to send a batch and make it durable, and how far it got before a crash. Its tests run the contract
suite every backend runs (``test_jsonl_backend.py``, ``tracelet_otel.testing.BackendContract``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from tracelet_otel.backends import Backend, BackendRun, Record, RunInfo


def translate(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Records -> the lines to write: pure, so it is tested without any file."""
    return [{"kind": record.kind.value, "tag": record.tag, "step": record.step, "wall_time": record.wall_time,
             "value": record.value, "payload": record.blob.uri if record.blob else None,
             "params": dict(record.params) if record.params else None} for record in records]


class JsonLinesRun(BackendRun):
    backend = "jsonl"
    resend_duplicates = True  # a batch appended twice would be in the file twice

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open(path, "a")  # noqa: SIM115 - open for the run's lifetime, closed by finish
        self._written_through = self.stored_through()

    @property
    def run_id(self) -> str:
        return os.path.basename(self.path).removesuffix(".jsonl")

    @property
    def reference(self) -> dict[str, Any]:
        return {"path": self.path}

    @property
    def url(self) -> str | None:
        return None

    def deliver(self, records: Sequence[Record], through_seq: int) -> None:
        if through_seq <= self._written_through:
            return  # written already; the flush that failed is what the sender is trying again
        lines = [*translate(records), {"through_seq": through_seq}]  # after the data: a crash keeps a prefix
        self._file.write("".join(json.dumps(line, allow_nan=True) + "\n" for line in lines))
        self._written_through = through_seq

    def flush(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def stored_through(self) -> int:
        with open(self.path) as file:
            marks = [json.loads(line)["through_seq"] for line in file if line.startswith('{"through_seq"')]
        return max(marks, default=0)

    def finish(self, status: str) -> None:
        self._file.write(json.dumps({"status": status}) + "\n")
        self._file.close()

    def discard(self) -> None:
        """The run was opened for nothing (another backend could not open its run): no file is left."""
        self._file.close()
        os.remove(self.path)


class JsonLinesBackend(Backend):
    name = "jsonl"
    options: ClassVar[Mapping[str, type]] = {"jsonl_directory": str}

    def open_run(self, run: RunInfo, options: Mapping[str, Any], resume: dict[str, Any] | None = None) -> JsonLinesRun:
        if resume:
            return JsonLinesRun(resume["path"])
        directory = options.get("jsonl_directory") or "."
        return JsonLinesRun(os.path.join(directory, f"{run.project or 'default'}-{run.exp_name}-{run.run_id}.jsonl"))
