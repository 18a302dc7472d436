"""Payloads through an S3-compatible store (moto's server on 127.0.0.1): the job stores an image there, sends
only its reference over OTLP, and the bridge, trusting that bucket, fetches it into MLflow."""

from __future__ import annotations

import os
import sys
import urllib.request

import pytest

from tests.bridge_support import Bridge, Job, Service, wait_for_status, wait_until
from tests.conftest import free_port
from tests.support import MlflowStore

pytest.importorskip("moto.server", reason="the S3 server for this test is moto[server] (requirements-test.txt)")
s3fs = pytest.importorskip("s3fs", reason="fsspec reaches S3 through s3fs (requirements-test.txt)")


class S3Server(Service):
    def __init__(self, directory: str) -> None:
        super().__init__(directory, "moto")
        self.port = free_port()
        self.environment = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}", "AWS_ACCESS_KEY_ID": "testing",
                            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> S3Server:
        self._launch([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                      "-p", str(self.port)])
        wait_until(self._answers, 30, f"moto to listen (log: {self.log})")
        return self

    def _answers(self) -> bool:
        assert self.running, self.read_log()
        try:
            with urllib.request.urlopen(self.environment["AWS_ENDPOINT_URL"], timeout=2):
                return True
        except OSError:
            return False


def test_an_image_logged_in_training_reaches_mlflow_through_the_bucket(tmp_path, monkeypatch):
    s3 = S3Server(str(tmp_path)).start()
    for name, value in s3.environment.items():
        monkeypatch.setenv(name, value)  # the job and the bridge inherit them, as pods would get them
    store = MlflowStore(f"sqlite:///{tmp_path}/mlflow.db")
    bridge = Bridge(str(tmp_path), store.uri, "--artifact-store", "s3://payloads/jobs")
    job = None
    try:
        s3fs.S3FileSystem().mkdir("payloads")
        bridge.start()
        job = Job(str(tmp_path), "to-the-bucket", bridge.grpc, [10], image=True, artifact_store="s3://payloads/jobs")
        assert job.finish()["undelivered"] == 0
        run = wait_for_status(store, job.run_id, "FINISHED")

        (stored,) = s3fs.S3FileSystem().glob("payloads/jobs/*/*.png")
        logged = [store.read_artifact(run.info.run_id, path) for path in store.artifacts(run.info.run_id, "images")
                  if path.endswith(".png")]
        assert s3fs.S3FileSystem().cat(stored) in logged
        assert bridge.health()["refused"] == {}
    finally:
        for service in (job, bridge, s3):
            if service is not None:
                service.kill()
