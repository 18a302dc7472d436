"""Reading the truth back: TensorBoard event files with TensorBoard's own reader, MLflow with its client."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator

import numpy as np
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util


def event_files(logdir: str) -> Iterator[str]:
    for directory, _, names in os.walk(logdir):
        for name in sorted(names):
            if ".tfevents." in name:
                yield os.path.join(directory, name)


def events(path: str) -> Iterator[event_pb2.Event]:
    for raw in RawEventFileLoader(path).Load():
        yield event_pb2.Event.FromString(raw)


def scalars_in(path: str) -> Iterator[tuple[str, int, float, float]]:
    """(tag, step, value, wall_time) of every scalar in one event file, old and new style."""
    for event in events(path):
        for value in event.summary.value:
            if value.WhichOneof("value") == "simple_value":
                yield value.tag, event.step, float(value.simple_value), event.wall_time
            elif value.metadata.plugin_data.plugin_name == "scalars":
                yield value.tag, event.step, float(tensor_util.make_ndarray(value.tensor).item()), event.wall_time


def comparable(value: float) -> object:
    """MLflow keeps NaN and stores +/-inf as +/-1.7976931348623157e308 (its documented mapping)."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return math.copysign(np.finfo(np.float64).max, value)
    return value


class MlflowStore:
    def __init__(self, uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)

    def run(self, run_id: str):
        return self.client.get_run(run_id)

    def metric_points(self, run_id: str) -> Counter[tuple[str, int, object, int]]:
        """Every stored metric point: (key, step, value, timestamp ms)."""
        points: Counter[tuple[str, int, object, int]] = Counter()
        for key in self.run(run_id).data.metrics:
            for metric in self.client.get_metric_history(run_id, key):
                points[key, metric.step, comparable(metric.value), metric.timestamp] += 1
        return points

    def artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        found = []
        for item in self.client.list_artifacts(run_id, path):
            found.extend(self.artifacts(run_id, item.path) if item.is_dir else [item.path])
        return sorted(found)

    def read_artifact(self, run_id: str, path: str) -> bytes:
        local = self.client.download_artifacts(run_id, path)
        with open(local, "rb") as file:
            return file.read()
