"""What each tracker's own integration records, our runs record too: ClearML's task holds the training code's
uncommitted diff and its packages, and TensorBoard's wall times; MLflow the system metrics its own switch
records; and our bookkeeping stays out of the user's sight, with an int hparam an int in every tracker. Real
offline stores, read back from their files; the job is a script in a git repository with an uncommitted change."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.support import event_files, events, scalars_in
from tracelet_otel_clearml.testing import read_session, session_folders
from tracelet_otel_wandb.testing import read_run, run_directories

TRAIN = textwrap.dedent("""
    import time
    import numpy as np
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    run = tracelet_otel.start_logging("parity", "tracelet-tests", backend=["mlflow", "wandb", "clearml"],
                                      config={"mlflow_system_metrics": True})
    with SummaryWriter("runs") as writer:
        writer.add_hparams({"batch_size": 32, "lr": 0.1}, {"hparam/accuracy": 0.5})
        for step in range(50):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            time.sleep(0.04)  # two seconds of training: MLflow's monitor samples every second here
        writer.add_image("sample", np.zeros((3, 8, 8), dtype=np.uint8), 7)
        writer.add_histogram("weights", np.arange(100.0), 7)
    tracelet_otel.stop_logging()
    print("RUNS", run.backends["mlflow"].run_id, run.backends["wandb"].run_id)
""")


def git(directory, *arguments: str) -> None:
    subprocess.run(["git", "-c", "user.name=ada", "-c", "user.email=ada@example.com", *arguments], cwd=directory,
                   check=True, capture_output=True)


def test_each_tracker_holds_what_its_own_integration_would_and_no_bookkeeping_in_sight(
        offline_trackers, mlflow_store, tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "train.py").write_text(TRAIN.replace("run = ", "# the first version\nrun = ", 1))
    git(tmp_path, "add", "train.py")
    git(tmp_path, "commit", "-q", "-m", "train")
    (tmp_path / "train.py").write_text(TRAIN)  # the uncommitted change
    environment = {**os.environ, "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"}
    job = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=environment)
    assert job.returncode == 0, job.stderr
    mlflow_run_id, wandb_run_id = job.stdout.split("RUNS ", 1)[1].split()
    (event_file,) = [path for path in event_files(str(tmp_path / "runs")) if os.path.dirname(path).endswith("runs")]
    wall_times = {step: wall_time for tag, step, _, wall_time in scalars_in(event_file) if tag == "loss"}
    payload_times = {value.tag: event.wall_time for event in events(event_file) for value in event.summary.value
                     if value.tag in ("sample", "weights")}

    (folder,) = session_folders(tmp_path / "clearml-cache")
    session = read_session(folder)
    script = session.task["script"]
    assert "-# the first version" in script["diff"]  # ClearML's own account of the uncommitted change
    assert "torch ==" in script["requirements"]["pip"]  # the packages the code imports, as ClearML lists them
    assert script["entry_point"] == "train.py"
    stamped = {iteration: timestamp for kind, title, _, iteration, timestamp in session.stamped
               if kind == "training_stats_scalar" and title == "loss"}
    assert sorted(stamped) == sorted(wall_times)
    assert max(abs(stamped[step] - wall_times[step] * 1000) for step in stamped) <= 5  # ms: TensorBoard's time
    stamps = {(kind, title): ms for kind, title, _, _, ms in session.stamped}
    sample, plot = stamps["training_debug_image", "sample"], stamps["plot", "weights"]
    assert abs(sample - payload_times["sample"] * 1000) <= 5 and abs(plot - payload_times["weights"] * 1000) <= 5
    assert session.parameters["TB_hparams/batch_size"] == "32"
    assert not [name for name in session.parameters if "tracelet" in name]

    (wandb_directory,) = run_directories(str(tmp_path / "wandb"), wandb_run_id)
    contents = read_run(wandb_directory)
    assert contents.config["batch_size"] == 32 and type(contents.config["batch_size"]) is int
    assert "tracelet" not in contents.config and contents.summary["_tracelet_run_id"]
    # The event files, as W&B's own sync_tensorboard keeps them, for its TensorBoard tab.
    saved = os.path.join(contents.files_dir, os.path.basename(event_file))
    with open(saved, "rb") as copy, open(event_file, "rb") as original:
        assert copy.read() == original.read()
    assert os.path.basename(event_file) in contents.files

    mlflow_run = mlflow_store.run(mlflow_run_id)
    assert mlflow_run.data.params["batch_size"] == "32"
    system = {key for key in mlflow_run.data.metrics if key.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
