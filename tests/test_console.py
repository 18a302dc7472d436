"""The training process's console reaches W&B's Logs, ClearML's console and MLflow's ``console.log`` through the
journal like every record, at the file-descriptor level (prints, ``os.write``, child processes), while the
terminal gets exactly what it gets without us, and a progress bar is one line, not one per redraw."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from mlflow.tracking import MlflowClient

from tracelet_otel.config import Options
from tracelet_otel.conversion import EventConverter
from tracelet_otel.payloads import ArtifactStore
from tracelet_otel_clearml.testing import read_session, session_folders
from tracelet_otel_wandb.testing import read_run, run_directories

JOB = textwrap.dedent("""
    import os, subprocess, sys
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    run = tracelet_otel.start_logging("console", "tracelet-tests", backend=["mlflow", "wandb", "clearml"])
    print("epoch 1: loss 0.5")
    print("a warning of the script's", file=sys.stderr)
    sys.stdout.flush()
    os.write(1, b"written to fd 1 directly\\n")  # as a C extension writes
    subprocess.run(["echo", "from a child process"], check=True)
    for percent in range(0, 101, 25):
        sys.stdout.write(f"\\rtraining {percent}%")
        sys.stdout.flush()
    print()
    with SummaryWriter("runs") as writer:
        writer.add_scalar("loss", 0.5, 1)
    tracelet_otel.stop_logging()
    print("after the run")
    print("RUNS", run.backends["mlflow"].run_id, run.backends["wandb"].run_id)
""")

OUT = ["epoch 1: loss 0.5", "written to fd 1 directly", "from a child process", "training 100%"]
ERR = ["a warning of the script's"]


def test_the_console_reaches_every_tracker_and_the_terminal_gets_every_byte_as_without_us(
        offline_trackers, mlflow_store, tmp_path):
    (tmp_path / "job.py").write_text(JOB)

    def job(**variables: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([sys.executable, "job.py"], cwd=tmp_path, capture_output=True, timeout=300,
                              env={**os.environ, **variables})
        assert done.returncode == 0, done.stderr.decode()
        return done

    without = job(TRACELET_CAPTURE_CONSOLE="false")
    captured = job()
    # Byte for byte, carriage returns included, but for the trackers' run ids.
    assert captured.stdout.rsplit(b"RUNS", 1)[0] == without.stdout.rsplit(b"RUNS", 1)[0]
    assert b"\rtraining 25%\rtraining 50%" in captured.stdout
    mlflow_run_id, wandb_run_id = captured.stdout.decode().rsplit("RUNS ", 1)[1].split()

    (wandb_directory,) = run_directories(str(tmp_path / "wandb"), wandb_run_id)
    logs = read_run(wandb_directory).console
    assert [text.rstrip("\n") for stream, text, _ in logs if stream == "stdout"] == OUT
    assert [text.rstrip("\n") for stream, text, _ in logs if stream == "stderr"][-1:] == ERR

    # Two sessions, one per job: the one whose console was captured holds every line, the other none.
    consoles = [[line for line in read_session(folder).console if line in OUT + ERR]
                for folder in session_folders(tmp_path / "clearml-cache")]
    assert sorted(map(sorted, consoles)) == [[], sorted(OUT + ERR)]

    console_log = MlflowClient(mlflow_store.uri).download_artifacts(mlflow_run_id, "console.log")
    with open(console_log) as file:
        logged = file.read().splitlines()
    assert [line for line in logged if line in OUT] == OUT and ERR[0] in logged
    assert "after the run" not in logged  # printed after stop_logging: not the run's


def converter() -> EventConverter:
    return EventConverter(Options(), ArtifactStore("/nonexistent"))


def test_console_bytes_become_lines_as_a_terminal_shows_them():
    lines = converter()
    texts = [record.text for chunk in (b"first\nsec", b"ond\r\n", b"\r 10%\r 50%", b"\r100%\n", b"no newline")
             for record in lines.console(1, 1.0, chunk)]
    assert texts == ["first", "second", "100%"]
    (last,) = lines.console_end(2.0)
    assert (last.tag, last.text, last.wall_time) == ("stdout", "no newline", 2.0)


def test_stdout_and_stderr_are_lines_of_their_own_and_undecodable_bytes_are_replaced():
    lines = converter()
    assert lines.console(1, 1.0, b"half of stdout ") == []
    (stderr,) = lines.console(2, 1.5, b"\xff stderr\n")
    assert (stderr.tag, stderr.text) == ("stderr", "\ufffd stderr")
    (stdout,) = lines.console(1, 2.0, b"and the rest\n")
    assert stdout.text == "half of stdout and the rest"


ON_A_TERMINAL = textwrap.dedent("""
    import sys
    import tracelet_otel

    tracelet_otel.start_logging("terminal", backend="mlflow")
    print("stdout is a terminal:", sys.stdout.isatty())
    print("\\x1b[32mgreen\\x1b[0m and a bar:", end="")
    for percent in (0, 50, 100):
        print(f"\\r{percent}%", end="", flush=True)
    print()
    tracelet_otel.stop_logging()
""")


def on_a_terminal(directory, capture: str) -> bytes:
    """What a terminal receives from the script (run on a pseudo-terminal of its own)."""
    import pty

    leader, follower = pty.openpty()
    try:
        subprocess.run([sys.executable, "terminal.py"], cwd=directory, stdout=follower, stderr=subprocess.DEVNULL,
                       timeout=300, check=True, env={**os.environ, "TRACELET_CAPTURE_CONSOLE": capture})
        os.close(follower)
        received = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end is closed: everything was read
                break
            if not chunk:
                break
            received += chunk
        return received
    finally:
        os.close(leader)


def test_on_a_terminal_programs_still_see_a_terminal_and_it_receives_the_same_bytes(mlflow_store, tmp_path):
    (tmp_path / "terminal.py").write_text(ON_A_TERMINAL)
    without, captured = on_a_terminal(tmp_path, "false"), on_a_terminal(tmp_path, "true")
    assert b"stdout is a terminal: True" in captured
    assert captured == without
    (run,) = mlflow_store.client.search_runs([mlflow_store.client.get_experiment_by_name("Default").experiment_id],
                                             "attributes.run_name = 'terminal'", max_results=1)
    with open(MlflowClient(mlflow_store.uri).download_artifacts(run.info.run_id, "console.log")) as file:
        # After our start line (stderr is captured too): the script's lines, the bar as its last drawing.
        assert file.read().splitlines()[1:] == ["stdout is a terminal: True", "100%"]
