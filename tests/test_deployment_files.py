"""docker-compose.yml and the collector config agree with each other and with what the package reads.

No Docker engine runs on our machines, so this checks the files' wiring, not the containers.
"""

from __future__ import annotations

import os

import yaml

from tracelet_otel.config import Options

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(path: str):
    with open(os.path.join(REPOSITORY, path)) as file:
        return yaml.safe_load(file)


def test_every_collector_pipeline_uses_declared_components():
    config = load("collector-config/otel-collector.yaml")
    for pipeline in config["service"]["pipelines"].values():
        assert set(pipeline["receivers"]) <= set(config["receivers"])
        assert set(pipeline.get("processors", [])) <= set(config["processors"])
        assert set(pipeline["exporters"]) <= set(config["exporters"])


def test_the_training_job_sends_otlp_to_the_collector_and_tracks_in_the_mlflow_service():
    compose = load("docker-compose.yml")
    services = compose["services"]
    environment = services["training"]["environment"]
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert "4317:4317" in services["otel-collector"]["ports"]
    assert environment["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "./collector-config/otel-collector.yaml" in services["otel-collector"]["volumes"][0]
    options = Options.resolve(None, {}, environment)  # TRACELET_* variables the job sets are valid
    assert options.spool_dir == "/tmp/tracelet"
