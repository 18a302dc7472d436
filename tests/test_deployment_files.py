"""docker-compose.yml and the collector config agree with each other and with what the package reads.

No Docker engine runs on our machines: ``docker-compose config`` validates the compose file, and the rest checks
the wiring (ports, endpoints, service names) between the job, the collector, the bridge and the trackers.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from tracelet_otel.cli import parser
from tracelet_otel.config import Options

BRIDGE = "loadbalancing/bridge"  # the collector's exporter to the bridge replicas

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path: str):
    with open(os.path.join(REPOSITORY, path)) as file:
        return yaml.safe_load(file)


@pytest.fixture(scope="module")
def collector():
    return load("collector-config/otel-collector.yaml")


@pytest.fixture(scope="module")
def services():
    return load("docker-compose.yml")["services"]


def serve_arguments(services):
    """The bridge's command line, parsed by the real ``tracelet-otel`` parser."""
    command = shlex.split(services["tracelet-bridge"]["command"])[-1]
    arguments = shlex.split(command[command.index("tracelet-otel serve"):])
    return parser().parse_args(arguments[1:])


def published_port(service, port: int) -> bool:
    return any(str(mapping).endswith(f":{port}") for mapping in service.get("ports", []))


def test_docker_compose_accepts_the_file():
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose); it validates the "
                    "file without a Docker engine")
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "config", "--quiet"], cwd=REPOSITORY,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_collector_pipeline_uses_declared_components(collector):
    connectors = set(collector["connectors"])
    assert set(collector["service"]["extensions"]) <= set(collector["extensions"])
    for pipeline in collector["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(collector["receivers"]) | connectors
        assert set(pipeline.get("processors", [])) <= set(collector["processors"])
        assert set(pipeline["exporters"]) <= set(collector["exporters"]) | connectors


def test_the_collector_routes_only_tracelet_spans_to_the_bridge_through_a_queue_on_disk(collector):
    pipelines = collector["service"]["pipelines"]
    (router,) = pipelines["traces"]["exporters"]
    routing = collector["connectors"][router]
    (route,) = routing["table"]
    assert 'attributes["tracelet.run_id"] != nil' in route["statement"]
    (tracelet_pipeline,) = route["pipelines"]
    assert pipelines[tracelet_pipeline]["exporters"] == [BRIDGE]
    assert BRIDGE not in {exporter for name, pipeline in pipelines.items() if name != tracelet_pipeline
                          for exporter in pipeline["exporters"]}
    assert routing["default_pipelines"] and tracelet_pipeline not in routing["default_pipelines"]
    assert "memory_limiter" in pipelines["traces"]["processors"]
    queue = collector["exporters"][BRIDGE]["protocol"]["otlp"]["sending_queue"]
    assert queue["enabled"] and queue["storage"] in collector["service"]["extensions"]
    assert queue["storage"].startswith("file_storage")
    assert pipelines["metrics"]["exporters"] == ["prometheus"]


def test_the_training_job_sends_only_otlp_to_the_collector(services, collector):
    environment = services["training"]["environment"]
    assert environment["TRACELET_BACKEND"] == "otlp"
    endpoint = urlsplit(environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
    grpc_port = int(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].rsplit(":", 1)[1])
    assert (endpoint.hostname, endpoint.port) == ("otel-collector", grpc_port)
    assert not [name for name in environment if name.startswith(("MLFLOW_", "WANDB_", "CLEARML_"))]
    options = Options.resolve(None, {}, environment)  # the TRACELET_* variables the job sets are valid
    assert options.artifact_store.startswith("s3://")


def test_the_collector_spreads_runs_over_the_bridge_replicas_by_trace_id_with_its_token(services, collector):
    exporter = collector["exporters"][BRIDGE]
    assert exporter["routing_key"] == "traceID"  # the otlp backend sends each run in one trace
    resolver = exporter["resolver"]["dns"]
    assert resolver["hostname"] in services and services[resolver["hostname"]]["deploy"]["replicas"] >= 2
    arguments = serve_arguments(services)
    assert arguments.grpc_endpoint == f"0.0.0.0:{resolver['port']}"
    assert exporter["protocol"]["otlp"]["headers"]["authorization"] == "Bearer ${env:TRACELET_OTEL_BRIDGE_TOKEN}"
    token = services["tracelet-bridge"]["environment"]["TRACELET_OTEL_BRIDGE_TOKEN"]
    assert services["otel-collector"]["environment"]["TRACELET_OTEL_BRIDGE_TOKEN"] == token


def test_the_collector_publishes_its_otlp_receiver_and_the_prometheus_endpoint(services, collector):
    for endpoint in (collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
                     collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
                     collector["exporters"]["prometheus"]["endpoint"]):
        assert published_port(services["otel-collector"], int(endpoint.rsplit(":", 1)[1]))


def test_the_bridge_replicas_share_their_state_in_the_postgresql_server_under_mlflow(services):
    state = urlsplit(serve_arguments(services).state)
    assert state.scheme == "postgresql" and services[state.hostname]["image"].startswith("postgres")
    assert state.path.strip("/") in services["postgres-databases"]["entrypoint"]  # created before the bridges start
    assert services["tracelet-bridge"]["depends_on"]["postgres-databases"]["condition"] == \
        "service_completed_successfully"


def test_the_bridge_reads_the_jobs_bucket_and_delivers_to_mlflow_on_postgres(services):
    bridge = services["tracelet-bridge"]["environment"]
    job = services["training"]["environment"]
    arguments = serve_arguments(services)
    assert arguments.backend == ["mlflow"]
    assert arguments.artifact_store == [job["TRACELET_ARTIFACT_STORE"]]
    assert bridge["AWS_ENDPOINT_URL"] == job["AWS_ENDPOINT_URL"]
    assert urlsplit(bridge["AWS_ENDPOINT_URL"]).hostname in services
    tracking = urlsplit(bridge["MLFLOW_TRACKING_URI"])
    mlflow_command = services["mlflow"]["command"]
    assert tracking.hostname in services and f"--port {tracking.port}" in mlflow_command
    backend_store = urlsplit(mlflow_command.split("--backend-store-uri", 1)[1].split()[0])
    assert backend_store.scheme == "postgresql+psycopg2" and backend_store.hostname in services
    assert services[backend_store.hostname]["image"].startswith("postgres")
