"""For tests: reading a ClearML offline session back without a server, from the files ClearML writes (clearml
2.1).

``$CLEARML_CACHE_DIR/offline/offline-<id>/`` holds ``metrics.jsonl`` (one JSON list of events a line: types
``training_stats_scalar``, ``training_debug_image``, ``plot``), ``log.jsonl`` (console lines, ``report_text``
among them), ``task.json`` (hyperparameters, script, artifacts) and ``data/`` (debug-sample and artifact files).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracelet_otel_clearml._run import read_bookkeeping

__all__ = ["DebugSample", "OfflineSession", "read_session", "session_folders"]

MONITOR_TITLE_PREFIX = ":monitor:"  # ClearML's resource monitor reports under these titles


@dataclass
class DebugSample:
    title: str
    series: str
    iteration: int
    path: Path  # the file in the session's data/ folder


@dataclass
class OfflineSession:
    folder: Path
    scalars: Counter[tuple[str, str, int, float]] = field(default_factory=Counter)  # (title, series, iter, value)
    samples: list[DebugSample] = field(default_factory=list)
    plots: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)  # (title, series, iter, plot)
    console: list[str] = field(default_factory=list)  # one entry a line
    monitor: list[tuple[str, str, float]] = field(default_factory=list)  # the resource monitor's (title, series, value)
    task: dict[str, Any] = field(default_factory=dict)
    bookkeeping: dict[str, str] = field(default_factory=dict)  # ours, which ClearML does not show (tracelet.json)
    stamped: list[tuple[str, str, str, int, int]] = field(default_factory=list)  # (type, title, series, iter, ms)

    @property
    def parameters(self) -> dict[str, str]:
        """``section/name`` -> value, the hyperparameters and the user properties (section ``properties``)."""
        return {f"{section}/{name}": entry["value"] for section, entries in (self.task.get("hyperparams") or {}).items()
                for name, entry in entries.items()}

    @property
    def artifacts(self) -> dict[str, Path]:
        return {artifact["key"]: Path(artifact["uri"]) for artifact in self.task["execution"].get("artifacts", [])}

    def console_lines_starting(self, prefix: str) -> list[str]:
        return [line for line in self.console if line.startswith(prefix)]


def session_folders(cache_dir: Path) -> list[Path]:
    return sorted(path for path in (cache_dir / "offline").glob("offline-*") if path.is_dir())


def read_session(folder: Path) -> OfflineSession:
    session = OfflineSession(folder, task=json.loads((folder / "task.json").read_text()),
                             bookkeeping=read_bookkeeping(folder))
    for event in _events(folder / "metrics.jsonl"):
        if event["type"] == "log":  # a task that reports from a thread of its own writes its console here too
            session.console.extend(event["msg"].splitlines())
            continue
        title, series, iteration = event["metric"], event["variant"], event["iter"]
        session.stamped.append((event["type"], title, series, iteration, event["timestamp"]))
        if title.startswith(MONITOR_TITLE_PREFIX):
            if event["type"] == "training_stats_scalar":
                session.monitor.append((title, series, event["value"]))
        elif event["type"] == "training_stats_scalar":
            session.scalars[title, series, iteration, event["value"]] += 1
        elif event["type"] == "training_debug_image":
            session.samples.append(DebugSample(title, series, iteration, folder / "data" / event["key"]))
        elif event["type"] == "plot":
            session.plots.append((title, series, iteration, json.loads(event["plot_str"])))
    for event in _events(folder / "log.jsonl"):
        session.console.extend(event["msg"].splitlines())
    return session


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [event for line in path.read_text().splitlines() if line for event in json.loads(line)]
