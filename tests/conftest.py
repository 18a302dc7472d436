"""Fixtures: every test runs in its own directory with its own MLflow store; servers are real and local."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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


POSTGRES_BIN = "/usr/lib/postgresql/15/bin"


class PostgresServer:
    """A real PostgreSQL on 127.0.0.1, as a team runs under MLflow (and the bridge's shared state). PostgreSQL
    refuses to run as root, so as root its cluster belongs to the ``postgres`` user, in a directory of its own."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="tracelet-postgres-")
        self.port = free_port()
        self._names = itertools.count(1)
        self._mlflow_template: str | None = None
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_owner:
            shutil.chown(self.directory, "postgres")

    def _run(self, *command: str) -> None:
        subprocess.run([*self._as_owner, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        data = os.path.join(self.directory, "data")
        self._run(f"{POSTGRES_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres")
        self._run(f"{POSTGRES_BIN}/pg_ctl", "-D", data, "-l", os.path.join(self.directory, "server.log"), "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c max_connections=400", "-w",
                  "start")

    def database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template``: its libpq URI."""
        name = f"db{next(self._names)}"
        self._run(f"{POSTGRES_BIN}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  *(("-T", template) if template else ()), name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def mlflow_database(self) -> str:
        """A new database for ``mlflow server``, with MLflow's tables (migrated once, then copied: a server's
        first start on an empty database spends seconds in migrations); its SQLAlchemy URI, which names the
        driver MLflow needs."""
        if self._mlflow_template is None:
            uri = self.database().replace("postgresql://", "postgresql+psycopg2://", 1)
            subprocess.run([os.path.join(os.path.dirname(sys.executable), "mlflow"), "db", "upgrade", uri],
                           check=True, capture_output=True, timeout=300)
            self._mlflow_template = uri.rsplit("/", 1)[1]
        return self.database(self._mlflow_template).replace("postgresql://", "postgresql+psycopg2://", 1)

    @property
    def pid(self) -> int:
        """The postmaster's: its backends are below it."""
        with open(os.path.join(self.directory, "data", "postmaster.pid")) as file:
            return int(file.readline())

    def stop(self) -> None:
        subprocess.run([*self._as_owner, f"{POSTGRES_BIN}/pg_ctl", "-D", os.path.join(self.directory, "data"),
                        "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if not os.path.exists(f"{POSTGRES_BIN}/initdb"):
        pytest.skip(f"PostgreSQL 15 is not installed ({POSTGRES_BIN}/initdb is missing): apt-get install postgresql")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


class MlflowServer:
    """A real ``mlflow server`` on 127.0.0.1 that a test can kill and restart on the same port and store: a
    PostgreSQL database (``database``, as teams run it) or a sqlite file in ``directory``."""

    def __init__(self, directory: str, database: str | None = None, workers: int = 1) -> None:
        self.directory = directory
        self.database = database or f"sqlite:///{directory}/server.db"
        self.workers = workers
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        command = [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
                   "--backend-store-uri", self.database,
                   "--default-artifact-root", f"{self.directory}/artifacts", "--serve-artifacts",
                   "--artifacts-destination", f"{self.directory}/artifacts",
                   "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        with open(os.path.join(self.directory, "server.log"), "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment,
                                             start_new_session=True)
        self._wait_healthy()

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

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
def mlflow_server(tmp_path_factory, postgres) -> Iterator[MlflowServer]:
    """An ``mlflow server`` on PostgreSQL, shared by the tests that only log to a server."""
    server = MlflowServer(str(tmp_path_factory.mktemp("mlflow-server")), postgres.mlflow_database())
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
