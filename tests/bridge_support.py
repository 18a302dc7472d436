"""The collector route's moving parts, as real processes on 127.0.0.1: the bridge (``tracelet-otel serve``), a
collector (rotel's ``rotel-agent``) and training jobs that send only OTLP. Each process runs in a process group
of its own and is killed with it at the end, pass or fail."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from tests.conftest import free_port
from tests.support import MlflowStore, comparable, event_files, scalars_in

BIN = os.path.dirname(sys.executable)

# Importing torch, tensorboardX or TensorBoard fails in the bridge and its delivery processes: it must run without
# them (docs/collector.md, "Installing the bridge").
_WITHOUT_TORCH = textwrap.dedent("""
    import sys

    class _Absent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "tensorboardX", "tensorboard"):
                raise ModuleNotFoundError(f"No module named {name!r} (the bridge must run without it)")
            return None

    sys.meta_path.insert(0, _Absent())
""")

# A training job that sends only OTLP. It logs in phases: the test says when to go on (a line on stdin), so that
# it can break something between two phases. It prints one JSON line per phase, then the run's delivery report.
TRAINING = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tracelet_otel
    from torch.utils.tensorboard import SummaryWriter

    settings = json.loads(sys.argv[1])
    run = tracelet_otel.start_logging(settings["name"], "collector-route", backend="otlp", config=settings["config"])
    writer = SummaryWriter("runs/" + settings["name"])
    step = 0
    for phase, count in enumerate(settings["phases"]):
        if phase:
            sys.stdin.readline()
        for _ in range(count):
            writer.add_scalar("loss", 1 / (step + 1), step)
            writer.add_scalar("accuracy", step / 1000, step)
            step += 1
        if phase == 0 and settings.get("image"):
            writer.add_image("sample", np.linspace(0, 1, 3 * 8 * 8).reshape(3, 8, 8), 0)
        writer.flush()
        print(json.dumps({"phase": phase, "run_id": run.run_id}), flush=True)
    writer.close()
    stopped = tracelet_otel.stop_logging()
    print(json.dumps({"delivery": stopped.delivery["otlp"].to_json()}), flush=True)
""")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Service:
    """A long-running command in its own process group, its output in a log file."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.log = os.path.join(directory, f"{name}.log")
        self._process: subprocess.Popen[bytes] | None = None

    def _launch(self, command: list[str], environment: dict[str, str] | None = None) -> None:
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                                             env=environment, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole group: the service and whatever it started."""
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, and wait for a clean exit; the group is killed afterwards whatever it left."""
        assert self._process is not None
        self._process.terminate()
        status = self._process.wait(timeout)
        self.kill()
        return status

    def read_log(self) -> str:
        with open(self.log, errors="replace") as file:
            return file.read()


class Bridge(Service):
    """``tracelet-otel serve`` delivering to MLflow, with its spool in ``directory``."""

    def __init__(self, directory: str, tracking_uri: str, *arguments: str, environment: dict[str, str] | None = None,
                 tls: tuple[str, str] | None = None, backends: tuple[str, ...] = ("mlflow",)):
        """``tls``: (certificate, key) files, in PEM; the certificate is also the CA the test trusts."""
        super().__init__(directory, "bridge")
        self.backends = backends
        self.grpc_port, self.http_port = free_port(), free_port()
        self.arguments = arguments + (("--tls-cert", tls[0], "--tls-key", tls[1]) if tls else ())
        self.tracking_uri = tracking_uri
        self._environment = environment or {}
        self._scheme = "https" if tls else "http"
        self._ssl = ssl.create_default_context(cafile=tls[0]) if tls else None
        with open(os.path.join(directory, "sitecustomize.py"), "w") as file:
            file.write(_WITHOUT_TORCH)

    @property
    def grpc(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self.http_port}"

    def start(self) -> Bridge:
        environment = {**os.environ, "PYTHONPATH": self.directory, "MLFLOW_TRACKING_URI": self.tracking_uri,
                       **self._environment}
        self._launch([os.path.join(BIN, "tracelet-otel"), "serve",
                      *(argument for backend in self.backends for argument in ("--backend", backend)),
                      "--grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                      "--http-endpoint", f"127.0.0.1:{self.http_port}",
                      "--spool-dir", os.path.join(self.directory, "spool"), *self.arguments], environment)
        wait_until(self._healthy, 60, f"the bridge to answer on /health (log: {self.log})")
        return self

    def _healthy(self) -> bool:
        assert self.running, self.read_log()
        try:
            return self.health()["status"] == "ok"
        except OSError:
            return False

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/health", timeout=5, context=self._ssl) as response:
            return json.load(response)


class Collector(Service):
    """rotel, an OpenTelemetry collector in one binary, forwarding OTLP to the bridge over gRPC."""

    def __init__(self, directory: str, downstream: str, *arguments: str) -> None:
        super().__init__(directory, "rotel")
        self.grpc_port, self.http_port = free_port(), free_port()
        self.downstream = downstream
        self.arguments = arguments

    @property
    def grpc(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    def start(self) -> Collector:
        import rotel

        agent = os.path.join(os.path.dirname(rotel.__file__), "rotel-agent")
        self._launch([agent, "start", "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
                      "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}", "--exporter", "otlp",
                      "--otlp-exporter-endpoint", self.downstream, "--otlp-exporter-protocol", "grpc",
                      "--batch-timeout", "200ms", "--pid-file", os.path.join(self.directory, "rotel.pid"),
                      "--log-file", os.path.join(self.directory, "rotel-agent.log"), *self.arguments])
        wait_until(self._listening, 30, f"rotel to listen (log: {self.log})")
        return self

    def _listening(self) -> bool:
        import socket

        assert self.running, self.read_log()
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.grpc_port)) == 0


class Job:
    """A training job that sends only OTLP, logging ``phases`` (scalars per phase) when told to go on."""

    def __init__(self, directory: str, name: str, endpoint: str, phases: list[int], **config: Any) -> None:
        self.directory = os.path.join(directory, name)
        os.makedirs(self.directory, exist_ok=True)
        with open(os.path.join(self.directory, "train.py"), "w") as file:
            file.write(TRAINING)
        settings = {"name": name, "phases": phases, "image": config.pop("image", False),
                    "config": {"otlp_endpoint": endpoint, "otlp_protocol": config.pop("protocol", "grpc"),
                               "stop_timeout": 120, **config}}
        self.process = subprocess.Popen([sys.executable, "train.py", json.dumps(settings)], cwd=self.directory,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.run_id = self.next_line()["run_id"]
        self._phases_left = len(phases) - 1

    def next_line(self) -> dict[str, Any]:
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert line, f"the job ended early with status {self.process.wait()}"
        return json.loads(line)

    def go_on(self) -> dict[str, Any]:
        """Log the next phase."""
        assert self._phases_left, "no phase left"
        self._phases_left -= 1
        self.process.stdin.write("\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        return self.next_line()

    def finish(self, timeout: float = 120) -> dict[str, Any]:
        """Log the phases left and wait for the job to stop; its otlp delivery report."""
        while self._phases_left:
            self.go_on()
        delivery = self.next_line()["delivery"]
        assert self.process.wait(timeout) == 0
        return delivery  # type: ignore[no-any-return]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream:
                with contextlib.suppress(BrokenPipeError):  # a line for a job that had ended already
                    stream.close()

    def scalars(self) -> Counter[tuple[str, int, object, int]]:
        """What the event files hold, as MLflow should store it: (key, step, value, timestamp ms)."""
        expected: Counter[tuple[str, int, object, int]] = Counter()
        for path in event_files(os.path.join(self.directory, "runs")):
            for tag, step, value, wall_time in scalars_in(path):
                expected[tag, step, comparable(value), int(wall_time * 1000)] += 1
        return expected


def self_signed_certificate(directory: str) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files in ``directory``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tracelet-otel bridge test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    paths = os.path.join(directory, "bridge.crt"), os.path.join(directory, "bridge.key")
    with open(paths[0], "wb") as file:
        file.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as file:
        file.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return paths


def mlflow_run(store: MlflowStore, run_id: str):
    """The MLflow run a bridge created for our run id (the tag every backend run carries)."""
    runs = store.client.search_runs(
        [experiment.experiment_id for experiment in store.client.search_experiments()],
        filter_string=f"tags.`tracelet.run_id` = '{run_id}'")
    assert len(runs) <= 1, f"{len(runs)} MLflow runs for one job"
    return runs[0] if runs else None


def wait_for_status(store: MlflowStore, run_id: str, status: str, timeout: float = 60):
    def ended():
        run = mlflow_run(store, run_id)
        return run if run is not None and run.info.status == status else None
    return wait_until(ended, timeout, f"the MLflow run of {run_id} to be {status}")


@contextlib.contextmanager
def running(*services: Any) -> Iterator[None]:
    """Kill every service, server and job (anything with ``kill()``) at the end, pass or fail."""
    try:
        yield
    finally:
        for service in services:
            service.kill()


class LoadGenerator:
    """Many runs at once, as their jobs' ``otlp`` backends send them, without training processes: each run an
    ``OtlpRun`` per endpoint (the records it spools become spans and an end, exactly as a job's), ``threads``
    sending side by side, every run's records in requests of ``batch`` in turn, so that all runs are in progress
    together."""

    def __init__(self, runs: int, scalars: int, *, batch: int = 250, threads: int = 8, prefix: str = "load") -> None:
        """``prefix`` names the runs (``<prefix>-0000`` ...) and their project (an MLflow experiment)."""
        self.run_ids = [f"{prefix}-{number:04d}" for number in range(runs)]
        self.project = prefix
        self.scalars = scalars
        self._batch = batch
        self._threads = threads
        self._senders: dict[tuple[str, str], Any] = {}
        self.started = time.time()
        # When each request of each run was accepted: (run id, last seq, time.time()).
        self.accepted: list[tuple[str, int, float]] = []

    def _sender(self, endpoint: str, run_id: str) -> Any:
        from tracelet_otel._backend import RunInfo
        from tracelet_otel.otlp import OtlpBackend

        if (endpoint, run_id) not in self._senders:
            self._senders[endpoint, run_id] = OtlpBackend().open_run(RunInfo(run_id, run_id, self.project), {
                "otlp_endpoint": endpoint, "otlp_protocol": "grpc", "otlp_insecure": True, "otlp_timeout": 60})
        return self._senders[endpoint, run_id]

    def records(self, run_id: str) -> list[Any]:
        from tracelet_otel.records import Record, RecordKind

        return [Record(RecordKind.SCALAR, "loss", step, self.started + step / 1000, "", "loss", 1 / (step + 1))
                for step in range(self.scalars)]

    def expected(self, run_id: str) -> Counter[tuple[str, int, object, int]]:
        """What MLflow must hold for the run: (key, step, value, timestamp ms), each once."""
        return Counter(("loss", record.step, comparable(record.value), int(record.wall_time * 1000))
                       for record in self.records(run_id))

    def send(self, *endpoints: str, start: int = 0, through: int | None = None, end: bool = True) -> None:
        """Send records ``start`` up to ``through`` of every run (all by default), then, with ``end``, each run's
        end. Each run goes to one of ``endpoints`` throughout (the n-th run to the n-th modulo their number), as a
        collector's ``loadbalancing`` exporter keeps a run on one replica."""
        import concurrent.futures

        records = {run_id: self.records(run_id)[start:through] for run_id in self.run_ids}
        endpoint_of = {run_id: endpoints[index % len(endpoints)] for index, run_id in enumerate(self.run_ids)}

        def run_share(share: list[str]) -> None:
            for offset in range(0, max(len(batch) for batch in records.values()), self._batch):
                for run_id in share:
                    part = records[run_id][offset:offset + self._batch]
                    if part:
                        last = start + offset + len(part)
                        self._sender(endpoint_of[run_id], run_id).deliver(part, last)
                        self.accepted.append((run_id, last, time.time()))
            if end:
                for run_id in share:
                    self._sender(endpoint_of[run_id], run_id).finish("FINISHED")

        with concurrent.futures.ThreadPoolExecutor(self._threads) as pool:
            shares = [self.run_ids[index::self._threads] for index in range(self._threads)]
            for done in [pool.submit(run_share, share) for share in shares if share]:
                done.result()
