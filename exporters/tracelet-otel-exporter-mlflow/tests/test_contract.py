"""MLflow keeps the delivery contract every backend keeps (``tracelet_otel.testing``), against a real store."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from tests.support import fresh_mlflow_store
from tracelet_otel.backends import BackendRunHandle, RunStatus
from tracelet_otel.testing import BackendContract, StoredRun

_IMAGE_COPY = re.compile(r"^images/(?P<tag>.+)/step_(?P<step>\d+)\.png$")  # the image's copy a program finds


class TestMlflowContract(BackendContract):
    backend = "mlflow"

    @pytest.fixture
    def options(self, mlflow_template, tmp_path) -> dict:
        return {"mlflow_tracking_uri": fresh_mlflow_store(mlflow_template, tmp_path)}

    def stored(self, run: BackendRunHandle) -> StoredRun:
        client = MlflowClient(run.reference["tracking_uri"])
        mlflow_run = client.get_run(run.run_id)
        scalars: Counter[tuple[str, int, float]] = Counter()
        for key in mlflow_run.data.metrics:
            scalars.update((key, point.step, point.value) for point in client.get_metric_history(run.run_id, key))
        payloads: Counter[tuple[str, int]] = Counter()
        for path in _artifacts(client, run.run_id, "images"):
            match = _IMAGE_COPY.match(path)
            if match:
                payloads[match["tag"], int(match["step"])] += 1
        status = mlflow_run.info.status
        return StoredRun(exists=mlflow_run.info.lifecycle_stage == "active", scalars=scalars, payloads=payloads,
                         status=status if status in RunStatus.ENDINGS else None)


def _artifacts(client: MlflowClient, run_id: str, path: str) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found.extend(_artifacts(client, run_id, item.path) if item.is_dir else [item.path])
    return found
