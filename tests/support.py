"""Reading the truth back: TensorBoard event files with TensorBoard's own reader, MLflow with its client; and
watching the processes a test starts."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

# What a developer's machine may have set for tracelet, MLflow, OpenTelemetry, W&B or ClearML.
MACHINE_SETTINGS = ("TRACELET_", "MLFLOW_", "OTEL_", "WANDB_", "CLEARML_", "TRAINS_")


@contextlib.contextmanager
def isolated_directory(directory: Any, monkeypatch: Any) -> Iterator[None]:
    """Work in ``directory`` with none of the machine's settings, and end any run a test left open."""
    for name in list(os.environ):
        if name.startswith(MACHINE_SETTINGS):
            monkeypatch.delenv(name)
    monkeypatch.chdir(directory)
    yield
    import tracelet_otel

    tracelet_otel.stop_logging()


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


@pytest.fixture(autouse=True)
def isolated(tmp_path: Any, monkeypatch: Any) -> Iterator[str]:
    """A fresh working directory; no TRACELET_*, MLflow, W&B or ClearML settings leak in from the machine. Each
    conftest imports it (the W&B and ClearML ones wrap it in their own)."""
    with isolated_directory(tmp_path, monkeypatch):
        yield str(tmp_path)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: Any) -> str:
    """An empty MLflow sqlite store with every migration applied (about a second of work), to copy from."""
    return migrated_mlflow_database(str(tmp_path_factory.mktemp("mlflow-template")))


def migrated_mlflow_database(directory: str) -> str:
    from mlflow.tracking import MlflowClient

    path = os.path.join(directory, "template.db")
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def fresh_mlflow_store(template: str, directory: Any) -> str:
    """A store of its own for one test, copied from the migrated template: its tracking URI."""
    path = os.path.join(str(directory), "mlflow.db")
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


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


def replay(directory: Any) -> subprocess.CompletedProcess[str]:
    """``tracelet-otel replay`` run in ``directory``, as a user runs it after a crash."""
    command = os.path.join(os.path.dirname(sys.executable), "tracelet-otel")
    return subprocess.run([command, "replay"], cwd=directory, capture_output=True, text=True, timeout=300)


def processes_below(root_pid: int) -> dict[int, str]:
    """Every process below ``root_pid``, children and theirs: pid -> command line (read from /proc)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as file:
                    parents[int(name)] = int(file.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    below, frontier = set(), {root_pid}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - below
        below |= frontier
    commands = {}
    for pid in below:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                commands[pid] = file.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return commands


def helper_processes(root_pid: int) -> list[str]:
    """Command lines of the tracelet-otel helper processes below ``root_pid``."""
    return [command for command in processes_below(root_pid).values() if "tracelet_otel" in command]


class ProcessGroup:
    """A command in a process group of its own, ended with the whole group, pass or fail."""

    def __init__(self, command: list[str], **kwargs: object) -> None:
        self.process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, **kwargs)  # type: ignore[call-overload]
        self.most_helpers: list[str] = []

    def wait(self, timeout: float) -> tuple[int, str]:
        """Wait, sampling the helper processes every 50 ms; returns the exit status and the output."""
        output: list[str] = []
        reader = threading.Thread(target=lambda: output.append(self.process.stdout.read()), daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            helpers = helper_processes(self.process.pid)
            if len(helpers) > len(self.most_helpers):
                self.most_helpers = helpers
            time.sleep(0.05)
        if self.process.poll() is None:
            raise TimeoutError(f"still running after {timeout}s with helpers {self.most_helpers}")
        reader.join(10)
        return self.process.returncode, "".join(output)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def log_fidelity_scenario(root: str, start: Callable[[], Any], *, steps: int = 30, media_every: int = 10) -> Any:
    """The scenario every backend is held to: a small regression model logged through three writers of two
    libraries (one created before ``start``, which starts logging), 0-d tensor and numpy values, ``add_scalars``
    of both libraries, NaN, inf, an int, a step that goes back and repeats, a histogram, an image and a text every
    ``media_every`` steps, and ``add_hparams`` of both. Returns what ``start`` returned.

    Per step it logs 7 scalars; after the loop 6 more and 2 hparams metrics.
    """
    import tensorboardX
    import torch
    from torch.utils.tensorboard import SummaryWriter

    early = SummaryWriter(root)  # created before start_logging: captured all the same
    started = start()
    validation = SummaryWriter(os.path.join(root, "validation"))
    extra = tensorboardX.SummaryWriter(os.path.join(root, "tbx"))

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs, targets = torch.randn(64, 4), torch.randn(64, 1)
    for step in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(inputs), targets)
        loss.backward()
        optimizer.step()
        early.add_scalar("Loss/Train/CrossEntropy", loss.detach(), step)  # a 0-d tensor
        early.add_scalar("Metrics/Accuracy/Train", np.float32(1 / (step + 1)), step)  # a numpy scalar
        validation.add_scalar("loss", loss.item() * 1.1, step)
        extra.add_scalar("loss", np.float64(loss.item() * 0.9), step)
        early.add_scalars("lr", {"base": 0.1, "scaled": 0.1 * step}, step)
        extra.add_scalars("grad", {"norm": float(model.weight.grad.norm())}, step)
        if step % media_every == 0:
            early.add_histogram("Weights/Layer1", model.weight, step)
            early.add_image("Predictions", torch.rand(3, 8, 8), step)
            early.add_text("Notes", f"step {step}: loss {loss.item():.3f}", step)
    early.add_scalar("odd/nan", float("nan"), 100)
    early.add_scalar("odd/inf", float("inf"), 101)
    early.add_scalar("odd/int", 7, 102)
    early.add_scalar("odd/out_of_order", 1.0, 50)
    early.add_scalar("odd/out_of_order", 2.0, 10)  # a step that goes back
    early.add_scalar("odd/out_of_order", 3.0, 10)  # and repeats
    early.add_hparams({"lr": 0.1, "optimizer": "sgd", "batch": 64}, {"hparam/loss": loss.item()})
    extra.add_hparams({"dropout": 0.5}, {"hparam/tbx_loss": 0.25})
    for writer in (early, validation, extra):
        writer.close()
    return started


def expected_key(root: str, path: str, tag: str) -> str:
    """The documented names of the scenario's scalars: the root verbatim, other writers by relative logdir,
    add_scalars as group/key, add_hparams metrics in the namespace of the writer they were called on."""
    relative = os.path.relpath(os.path.dirname(path), root).replace(os.sep, "/")
    parts = [] if relative == "." else relative.split("/")
    if parts and parts[-1].startswith(("lr_",)):  # torch add_scalars: <logdir>/<main>_<key>
        return "/".join([*parts[:-1], tag, parts[-1][len(tag) + 1:]])
    if len(parts) >= 2 and parts[-2] == "grad":  # tensorboardX add_scalars: <logdir>/<main>/<key>
        return "/".join([*parts[:-2], tag, parts[-1]])
    if parts and parts[-1].replace(".", "").isdigit():  # add_hparams: <logdir>/<time.time()>
        parts = parts[:-1]
    return "/".join([*parts, tag])


def read_until(job: ProcessGroup, start: str) -> str:
    """The job's next output line that starts with ``start`` (its warnings come on the same stream)."""
    while True:
        line = job.process.stdout.readline()
        assert line, f"the job ended before printing {start!r}"
        if line.startswith(start):
            return line.rstrip("\n")
