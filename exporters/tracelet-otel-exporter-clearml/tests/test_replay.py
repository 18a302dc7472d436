"""A job killed mid-run, then `tracelet-otel replay`: the rest reaches the very same offline task, nothing is
stored twice, and the replayed session's files do not overwrite the first one's. Real processes, real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

from tests.support import event_files, events, scalars_in
from tracelet_otel_clearml.testing import read_session, session_folders

# Logs steps 0-9 and waits until all of them are delivered; stops the delivery worker (SIGSTOP), logs steps
# 10-19, which can only be journaled and spooled, and waits to be killed.
TRAINING = textwrap.dedent("""
    import glob, os, signal, time
    import numpy as np
    import psutil
    import tracelet_otel
    from pathlib import Path
    from torch.utils.tensorboard import SummaryWriter
    from tracelet_otel.delivery import Spool
    from tracelet_otel_clearml.testing import read_session, session_folders

    tracelet_otel.start_logging("replayed", "tracelet-tests", backend="clearml",
                                config={"clearml_resource_monitoring": False})
    writer = SummaryWriter("runs")

    def log(first):
        for step in range(first, first + 10):
            writer.add_scalar("loss", step / 10, step)
            writer.add_text("Notes", f"note {step}", step)
        writer.add_image("sample", np.random.rand(3, 8, 8), first)
        writer.flush()

    def all_delivered():
        folders = session_folders(Path(os.environ["CLEARML_CACHE_DIR"]))
        if not folders or len(read_session(folders[0]).scalars) < 10 or len(read_session(folders[0]).samples) < 1:
            return False
        spool = Spool(glob.glob(".tracelet/**/clearml.spool.sqlite", recursive=True)[0])
        try:  # delivered only once ClearML wrote the data and tracelet_stored_through
            return spool.count() == 0
        finally:
            spool.close()

    log(0)
    deadline = time.monotonic() + 60
    while not all_delivered() and time.monotonic() < deadline:
        time.sleep(0.1)
    (worker,) = [process for process in psutil.Process().children(recursive=True)
                 if "tracelet_otel.delivery" in " ".join(process.cmdline())]
    worker.send_signal(signal.SIGSTOP)
    log(10)
    time.sleep(1)  # the capture thread journals every 50 ms
    print("LOGGED", flush=True)
    time.sleep(3600)
""")


def test_replay_continues_the_same_task_exactly_once(clearml_cache, tmp_path):
    (tmp_path / "train.py").write_text(TRAINING)
    process = subprocess.Popen([sys.executable, "train.py"], cwd=tmp_path, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "LOGGED\n"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # training, agent and the stopped worker: a preempted job
        process.wait()

    command = os.path.join(os.path.dirname(sys.executable), "tracelet-otel")
    result = subprocess.run([command, "replay"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    (folder,) = session_folders(clearml_cache)
    session = read_session(folder)
    logged = Counter(("loss", "loss", step, value) for path in event_files(str(tmp_path / "runs"))
                     for _, step, value, _ in scalars_in(path))
    assert sorted(step for _, _, step, _ in logged) == list(range(20))
    assert session.scalars == logged
    assert session.console_lines_starting("Notes (step ") == [f"Notes (step {step}): note {step}" for step in range(20)]
    images = {event.step: value.image.encoded_image_string for path in event_files(str(tmp_path / "runs"))
              for event in events(path) for value in event.summary.value if value.HasField("image")}
    # the replayed session's image got a file of its own: the first session's is intact
    assert sorted((sample.iteration, sample.path.read_bytes()) for sample in session.samples) == sorted(images.items())
    assert (session.bookkeeping["tracelet_sessions"], session.bookkeeping["tracelet_status"]) == ("2", "KILLED")
    assert session.console_lines_starting("tracelet-otel: the run ended KILLED")  # what an imported session shows
    assert "nothing to replay" in subprocess.run([command, "replay"], cwd=tmp_path, capture_output=True, text=True,
                                                 timeout=120).stderr
