"""Never silent: a run says what it captures and where it goes when it starts, what each backend got when it
stops, which event files got values past the capture, and ``tracelet-otel status`` shows every run in a spool
directory with what waits, what failed and what ``replay`` would send."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time

from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.conftest import MlflowServer
from tests.support import ProcessGroup, read_until, replay

STATUS = "tracelet_otel.status"


def test_start_says_what_is_captured_and_where_it_goes_and_stop_what_each_backend_got(
        mlflow_store, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=STATUS)
    run = tracelet_otel.start_logging("said", "tracelet-tests")
    (started,) = [record.getMessage() for record in caplog.records if record.name == STATUS]
    assert started == (f"tracelet-otel: run said ({run.run_id}) captures SummaryWriter of torch.utils.tensorboard "
                       f"and tensorboardX -> mlflow run {run.backends['mlflow'].run_id} {mlflow_store.uri}")
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        for step in range(10):
            writer.add_scalar("loss", step, step)
    tracelet_otel.stop_logging()
    stopped = [record.getMessage() for record in caplog.records if record.name == STATUS][1:]
    assert stopped == [f"tracelet-otel: run said ({run.run_id}) stopped: mlflow 10 delivered, 0 dropped"]


QUIET_OR_NOT = textwrap.dedent("""
    import logging, sys
    import tracelet_otel

    if sys.argv[1] == "silenced":
        logging.getLogger("tracelet_otel.status").setLevel(logging.WARNING)
    tracelet_otel.start_logging("lines")
    tracelet_otel.stop_logging()
""")


def test_the_lines_are_on_stderr_without_any_logging_set_up_and_one_logger_level_silences_them(
        mlflow_store, tmp_path):
    (tmp_path / "job.py").write_text(QUIET_OR_NOT)
    said, silenced = (subprocess.run([sys.executable, "job.py", how], cwd=tmp_path, capture_output=True,
                                     text=True, timeout=120) for how in ("said", "silenced"))
    assert said.returncode == 0 and silenced.returncode == 0, said.stderr + silenced.stderr
    lines = [line for line in said.stderr.splitlines() if line.startswith("tracelet-otel: run lines")]
    assert len(lines) == 2 and "captures SummaryWriter" in lines[0] and "stopped: mlflow 0 delivered" in lines[1]
    assert said.stdout == silenced.stdout == ""
    assert "tracelet-otel: run" not in silenced.stderr


CHILD_WRITER = ("from torch.utils.tensorboard import SummaryWriter\n"
                "with SummaryWriter('runs/evaluation') as writer:\n"
                "    writer.add_scalar('accuracy', 0.5, 0)\n")


def test_values_that_reach_an_event_file_past_the_capture_are_reported_with_the_directory(
        mlflow_store, tmp_path, caplog):
    run = tracelet_otel.start_logging("bypassed")
    with SummaryWriter(str(tmp_path / "runs")) as writer:
        writer.add_scalar("loss", 1.0, 0)
        # A process of its own that never started a run: its values reach its event file, not us.
        subprocess.run([sys.executable, "-c", CHILD_WRITER], cwd=tmp_path, check=True, timeout=120)
        SummaryWriter(str(tmp_path / "runs" / "idle")).close()  # no values: nothing to say about it
    stopped = tracelet_otel.stop_logging()

    (missed,) = stopped.capture.uncaptured
    assert os.path.dirname(missed) == str(tmp_path / "runs" / "evaluation")
    (warning,) = [record.getMessage() for record in caplog.records if "did not reach run" in record.getMessage()]
    assert f"in {tmp_path / 'runs' / 'evaluation'} hold values that did not reach run {run.run_id}" in warning
    assert "tracelet-otel sync DIR --backend mlflow" in warning


STALLED = textwrap.dedent("""
    import sys
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    tracelet_otel.start_logging("stalled", config={"mlflow_tracking_uri": sys.argv[1]})
    writer = SummaryWriter("runs")
    print("STARTED", flush=True)
    sys.stdin.readline()  # the tracker goes down meanwhile
    for step in range(50):
        writer.add_scalar("loss", step, step)
    writer.flush()
    print("LOGGED", flush=True)
    sys.stdin.readline()  # killed here
""")


def status(directory) -> str:
    command = os.path.join(os.path.dirname(sys.executable), "tracelet-otel")
    result = subprocess.run([command, "status"], cwd=directory, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_status_shows_a_live_run_waiting_for_its_tracker_and_what_replay_would_send_once_it_was_killed(
        tmp_path, postgres):
    server = MlflowServer(str(tmp_path), postgres.mlflow_database())
    server.start()
    try:
        (tmp_path / "train.py").write_text(STALLED)
        with ProcessGroup([sys.executable, "train.py", server.uri], cwd=tmp_path, stdin=subprocess.PIPE) as job:
            read_until(job, "STARTED")
            server.kill()
            job.process.stdin.write("\n")
            job.process.stdin.flush()
            read_until(job, "LOGGED")
            deadline = time.monotonic() + 60
            while "last error" not in (shown := status(tmp_path)) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert "in progress: an agent is delivering it" in shown
            assert "spooled 50, delivered 0, waiting 50, the oldest waiting" in shown
            assert "last error (" in shown and "replay would send" not in shown
        # The whole job was SIGKILLed: its run is left over.
        shown = status(tmp_path)
        assert "left over: `tracelet-otel replay .tracelet` delivers it" in shown
        assert "replay would send mlflow its 50 waiting records, then end the run KILLED" in shown

        server.start()
        replayed = replay(tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert status(tmp_path) == "no runs in .tracelet\n"
    finally:
        server.stop()
