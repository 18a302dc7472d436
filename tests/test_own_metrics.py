"""Our own OpenTelemetry metrics: the live scalar gauges and the per-backend delivery counters."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np

TRAIN = textwrap.dedent("""
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    tracelet_otel.start_logging("metrics", "own-metrics")
    with SummaryWriter("runs/metrics") as writer:
        for step in range(50):
            writer.add_scalar("Loss/Train", 1.0 / (step + 1), step)
    tracelet_otel.stop_logging()
""")


def exported_points(text: str) -> dict[str, list[dict]]:
    """Metric points from the console exporter's JSON documents."""
    points: dict[str, list[dict]] = {}
    decoder = json.JSONDecoder()
    for match in re.finditer(r'\{\s*"resource_metrics"', text):
        document, _ = decoder.raw_decode(text, match.start())
        for resource in document["resource_metrics"]:
            for scope in resource["scope_metrics"]:
                for metric in scope["metrics"]:
                    points.setdefault(metric["name"], []).extend(metric["data"]["data_points"])
    return points


def test_scalar_gauges_and_delivery_counters_are_exported_where_otel_is_configured(mlflow_store, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    environment = {**os.environ, "OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "60000"}
    result = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=180, check=True)

    points = exported_points(result.stderr)
    (gauge,) = points["tensorboard.scalar"]
    assert gauge["attributes"] == {"tensorboard.tag": "Loss/Train", "tensorboard.writer": ""}
    assert gauge["value"] == float(np.float32(1.0 / 50))  # the float32 TensorBoard stored
    delivery = {point["attributes"]["outcome"]: point["value"] for point in points["tracelet.delivery.records"]
                if point["attributes"]["backend"] == "mlflow"}
    assert (delivery["spooled"], delivery["delivered"], delivery["retried"]) == (50, 50, 0)
