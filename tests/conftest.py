"""Fixtures: every test runs in its own directory with its own MLflow store; servers are real and local."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support import MlflowStore, fresh_mlflow_store, isolated, mlflow_template

__all__ = ["isolated", "mlflow_template"]  # fixtures every test here uses, kept with the other conftests'


@pytest.fixture
def mlflow_store(mlflow_template, tmp_path, monkeypatch) -> MlflowStore:
    """A real local MLflow store (sqlite) of the test's own, named through MLFLOW_TRACKING_URI as a user would."""
    uri = fresh_mlflow_store(mlflow_template, tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return MlflowStore(uri)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 that a test can kill and restart on the same port and store."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
                   "--backend-store-uri", f"sqlite:///{self.directory}/server.db",
                   "--default-artifact-root", f"{self.directory}/artifacts", "--serve-artifacts",
                   "--artifacts-destination", f"{self.directory}/artifacts",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with open(os.path.join(self.directory, "server.log"), "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                             start_new_session=True)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not become healthy; see {self.directory}/server.log")

    def kill(self) -> None:
        """SIGKILL the whole server (it forks workers)."""
        if self._process is not None:
            os.killpg(self._process.pid, 9)
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            os.killpg(self._process.pid, 15)
            self._process.wait(timeout=30)
            self._process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> Iterator[MlflowServer]:
    server = MlflowServer(str(tmp_path_factory.mktemp("mlflow-server")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def offline_trackers(tmp_path, monkeypatch) -> Iterator[None]:
    """W&B and ClearML offline, their files in the test's directory, read back by their testing modules."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    configuration = tmp_path / "clearml.conf"
    configuration.write_text("")
    monkeypatch.setenv("CLEARML_OFFLINE_MODE", "1")
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml-cache"))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(configuration))
    yield
    import wandb

    wandb.teardown()  # W&B reads WANDB_* once per process
