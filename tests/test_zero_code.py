"""``opentelemetry-instrument python train.py`` with TRACELET_* variables: no change to the training code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

TRAIN = textwrap.dedent("""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter("runs/zero-code") as writer:
        for step in range(20):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
""")


def test_opentelemetry_instrument_captures_tensorboard_from_the_environment(mlflow_store, tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    environment = {**os.environ, "TRACELET_EXP_NAME": "zero-code", "TRACELET_PROJECT": "no-code-change",
                   "TRACELET_BACKEND": "mlflow", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none",
                   "OTEL_LOGS_EXPORTER": "none"}
    instrument = os.path.join(os.path.dirname(sys.executable), "opentelemetry-instrument")
    subprocess.run([instrument, sys.executable, "train.py"], cwd=tmp_path, env=environment, check=True, timeout=180)

    experiment = mlflow_store.client.get_experiment_by_name("no-code-change")
    (run,) = mlflow_store.client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("zero-code", "FINISHED")
    assert [m.step for m in mlflow_store.client.get_metric_history(run.info.run_id, "loss")] == list(range(20))
