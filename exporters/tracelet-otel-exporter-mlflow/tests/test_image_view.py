"""Images and pictures of histograms in MLflow's image view, against a real local MLflow store, read back with
MLflow's own client the way MLflow's UI reads them."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from torch.utils.tensorboard.summary import histogram, image

from tracelet_otel.backends import RunInfo
from tracelet_otel.payloads import ArtifactStore
from tracelet_otel.records import Record, RecordKind
from tracelet_otel_mlflow import MlflowBackend, mlflow_image_key
from tracelet_otel_mlflow._histogram_picture import HEIGHT, WIDTH
from tracelet_otel_mlflow.testing import logged_images

WALL_TIME = 1700000000.25


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "payloads"))


def open_run(tracking_uri: str, **options):
    return MlflowBackend().open_run(RunInfo("ours", "images", "image-view"),
                                    {"mlflow_tracking_uri": tracking_uri, **options})


def image_record(store: ArtifactStore, tag: str, step: int) -> Record:
    """An image as TensorBoard encodes it (its PNG), a different one per step."""
    pixels = np.full((3, 8, 12), step / 10, dtype=np.float32)
    png = image(tag, pixels, dataformats="CHW").value[0].image.encoded_image_string
    return Record(RecordKind.IMAGE, tag, step, WALL_TIME + step, blob=store.put(png, "image/png"))


def histogram_record(store: ArtifactStore, tag: str, step: int) -> Record:
    """A histogram as tracelet-otel stores it: TensorBoard's buckets as JSON."""
    histo = histogram(tag, np.random.default_rng(step).normal(size=1000), bins="auto").value[0].histo
    body = {"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum, "sum_squares": histo.sum_squares,
            "bucket_limit": list(histo.bucket_limit), "bucket": list(histo.bucket)}
    return Record(RecordKind.HISTOGRAM, tag, step, WALL_TIME + step,
                  blob=store.put(json.dumps(body).encode(), "application/json"))


def test_images_and_histogram_pictures_appear_per_key_and_step_with_tensorboards_step_and_time(tracking_uri, store):
    records = [record for step in range(3) for record in (image_record(store, "Samples/Input", step),
                                                          histogram_record(store, "Weights/Layer1", step))]
    run = open_run(tracking_uri)
    run.deliver(records, through_seq=len(records))

    client = MlflowClient(tracking_uri)
    images = logged_images(client, run.run_id)
    assert [(i.key, i.step, i.timestamp_ms) for i in images] == [
        *(("Samples/Input", step, int((WALL_TIME + step) * 1000)) for step in range(3)),
        *(("histograms/Weights/Layer1", step, int((WALL_TIME + step) * 1000)) for step in range(3))]
    assert all(i.thumbnail_path is not None for i in images)
    assert client.get_run(run.run_id).data.tags["mlflow.loggedImages"] == "True"  # what MLflow's UI looks for

    by_key = {(i.key, i.step): i for i in images}
    assert read(client, run.run_id, by_key["Samples/Input", 1].path) == read_payload(records[2])  # as TensorBoard wrote
    picture = Image.open(io.BytesIO(read(client, run.run_id, by_key["histograms/Weights/Layer1", 0].path)))
    assert (picture.format, picture.size) == ("PNG", (WIDTH, HEIGHT))
    assert json.loads(read(client, run.run_id, "histograms/Weights/Layer1/step_0.json")) == json.loads(
        read_payload(records[1]))  # the JSON is kept, for programs


def test_the_plain_copies_stay_for_programs_that_read_files(tracking_uri, store):
    run = open_run(tracking_uri)
    run.deliver([image_record(store, "Samples/Input", 4)], through_seq=1)
    paths = [item.path for item in MlflowClient(tracking_uri).list_artifacts(run.run_id, "images/Samples/Input")]
    assert paths == ["images/Samples/Input/step_4.png"]


def test_a_batch_delivered_twice_gives_one_image_per_key_and_step(tracking_uri, store):
    """MLflow's backend does not store ``through_seq`` (its stores are idempotent): a crash between delivery and
    the spool's record of it sends the batch again, maybe to a run reopened by replay."""
    records = [image_record(store, "Samples/Input", 0), histogram_record(store, "Weights/Layer1", 0)]
    run = open_run(tracking_uri)
    run.deliver(records, through_seq=2)
    run.deliver(records, through_seq=2)
    reopened = MlflowBackend().open_run(RunInfo("ours", "images", "image-view"), {}, resume=run.reference)
    reopened.deliver(records, through_seq=2)

    client = MlflowClient(tracking_uri)
    assert [(i.key, i.step) for i in logged_images(client, run.run_id)] == [
        ("Samples/Input", 0), ("histograms/Weights/Layer1", 0)]
    assert len(client.list_artifacts(run.run_id, "images")) == 5  # two images, two thumbnails, the copies' folder


def test_our_files_are_named_as_mlflows_own_log_image_names_them(tracking_uri, store):
    """If MLflow changes its layout, this fails here rather than the images vanishing from users' charts."""
    record = image_record(store, "Samples/Input", 5)
    ours = open_run(tracking_uri)
    ours.deliver([record], through_seq=1)
    client = MlflowClient(tracking_uri)
    theirs = client.create_run(client.get_experiment_by_name("image-view").experiment_id).info.run_id
    client.log_image(theirs, Image.open(io.BytesIO(read_payload(record))), key="Samples/Input", step=5,
                     timestamp=int(record.wall_time * 1000))

    def layout(run_id: str) -> list[str]:  # the names, less the last field: a uuid in theirs, a hash in ours
        return sorted(item.path.replace(item.path.split("+")[5], "<id>")
                      for item in client.list_artifacts(run_id, "images") if not item.is_dir)

    assert layout(ours.run_id) == layout(theirs)
    assert client.get_run(ours.run_id).data.tags["mlflow.loggedImages"] == client.get_run(
        theirs).data.tags["mlflow.loggedImages"]


def test_histogram_pictures_can_be_turned_off(tracking_uri, store):
    run = open_run(tracking_uri, mlflow_histogram_images=False)
    run.deliver([histogram_record(store, "Weights/Layer1", 0)], through_seq=1)
    client = MlflowClient(tracking_uri)
    assert logged_images(client, run.run_id) == []
    assert [item.path for item in client.list_artifacts(run.run_id, "histograms/Weights/Layer1")] == [
        "histograms/Weights/Layer1/step_0.json"]


def test_every_image_key_is_accepted_by_mlflows_own_log_image(tracking_uri):
    client = MlflowClient(tracking_uri)
    run_id = client.create_run(client.create_experiment("keys")).info.run_id
    for tag in ["größe", "acc (top-1)", "time: 3", "a//b", "emoji 🎉", "x" * 300, ""]:
        client.log_image(run_id, np.zeros((2, 2, 3), dtype=np.uint8), key=mlflow_image_key(tag), step=0)


def test_a_payload_pillow_cannot_read_still_arrives_as_an_artifact_with_one_warning(tracking_uri, store, caplog):
    broken = Record(RecordKind.IMAGE, "broken", 0, WALL_TIME, blob=store.put(b"not a png", "image/png"))
    run = open_run(tracking_uri)
    with caplog.at_level(logging.WARNING, logger="tracelet_otel.mlflow"):
        run.deliver([broken], through_seq=1)
    client = MlflowClient(tracking_uri)
    assert logged_images(client, run.run_id) == []
    assert read(client, run.run_id, "images/broken/step_0.png") == b"not a png"
    assert "'broken' step 0 is not in MLflow's image view" in caplog.text


def read(client: MlflowClient, run_id: str, path: str) -> bytes:
    with open(client.download_artifacts(run_id, path), "rb") as file:
        return file.read()


def read_payload(record: Record) -> bytes:
    from tracelet_otel.payloads import read_blob

    assert record.blob is not None
    return read_blob(record.blob)
