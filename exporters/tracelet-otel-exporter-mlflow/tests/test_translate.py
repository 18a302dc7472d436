"""The MLflow translation is a pure function: records in, calls out."""

from __future__ import annotations

import math

import pytest
from mlflow.utils.validation import _validate_metric_name

from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel_mlflow._translate import (
    LogArtifact,
    LogBatch,
    LogImage,
    MetricPoint,
    mlflow_image_key,
    mlflow_name,
    translate,
)

BLOB = Blob("file:///store/ab/abc.png", "abc", "image/png", 10)


def scalar(tag: str, value: float = 1.0, step: int = 0, wall_time: float = 1700000000.1234) -> Record:
    return Record(RecordKind.SCALAR, tag, step, wall_time, value=value)


def test_scalars_become_one_log_batch_with_step_and_wall_time_in_ms():
    (call,) = translate([scalar("loss", 0.5, 3), scalar("acc", math.nan, -1)]).calls
    assert isinstance(call, LogBatch) and call.params == ()
    assert call.metrics[0] == MetricPoint("loss", 0.5, 1700000000123, 3)
    nan = call.metrics[1]
    assert (nan.key, nan.timestamp_ms, nan.step, math.isnan(nan.value)) == ("acc", 1700000000123, -1, True)


@pytest.mark.parametrize(("tag", "name"), [
    ("Loss/Train/CrossEntropy", "Loss/Train/CrossEntropy"),
    ("acc (top-1)", "acc _top-1_"),
    ("a//b", "a/_/b"),
    ("/leading", "_/leading"),
    ("trailing/", "trailing/_"),
    ("../up", "__/up"),
    ("", "_"),
    ("loss 🚀", "loss _"),
    ("größe", "größe"),
    ("tab\there", "tab_here"),
    ("a,b#c@d=e%f+g\\h'i", "a_b_c_d_e_f_g_h_i"),
])
def test_names_mlflow_rejects_are_mapped_by_one_rule(tag, name):
    assert mlflow_name(tag) == name


def test_long_names_keep_a_hash_of_the_original_so_they_stay_apart():
    first, second = mlflow_name("x" * 300 + "a"), mlflow_name("x" * 300 + "b")
    assert len(first) == len(second) == 250 and first != second


@pytest.mark.parametrize("tag", ["", "a//b", "../x", "x" * 400, "emoji 🎉/", "new\nline", "./.", "a\\b", "ü/ß"])
def test_every_mapped_name_passes_mlflows_own_validation(tag):
    _validate_metric_name(mlflow_name(tag))


def test_renamed_tags_are_reported_once_for_a_warning():
    translation = translate([scalar("acc (top-1)"), scalar("acc (top-1)", step=1), scalar("fine")])
    assert translation.renamed == {"acc (top-1)": "acc _top-1_"}


def test_hparams_become_params_as_their_text():
    record = Record(RecordKind.HPARAMS, "hparams", 0, 1.0, params={"lr": 0.1, "batch": 64, "opt": "adam",
                                                                      "bad name!": True}, blob=BLOB)
    calls = translate([record]).calls
    assert calls[0] == LogBatch(params=(("lr", "0.1"), ("batch", "64"), ("opt", "adam"), ("bad name_", "True")))
    assert calls[1] == LogArtifact(BLOB, "hparams", "step_0.json")


def test_each_add_hparams_call_keeps_its_own_artifact():
    record = Record(RecordKind.HPARAMS, "hparams", 0, 1.0, writer="val", params={"lr": 0.1}, blob=BLOB,
                    filename="1700000000.5.json")
    assert translate([record]).calls[1] == LogArtifact(BLOB, "hparams/val", "1700000000.5.json")


@pytest.mark.parametrize(("kind", "media_type", "folder", "filename"), [
    (RecordKind.IMAGE, "image/png", "images/Samples", "step_7.png"),
    (RecordKind.VIDEO, "image/gif", "videos/Samples", "step_7.gif"),
    (RecordKind.AUDIO, "audio/wav", "audio/Samples", "step_7.wav"),
    (RecordKind.TEXT, "text/plain", "text/Samples", "step_7.txt"),
    (RecordKind.HISTOGRAM, "application/json", "histograms/Samples", "step_7.json"),
    (RecordKind.PR_CURVE, "application/json", "pr_curves/Samples", "step_7.json"),
    (RecordKind.TENSOR, "application/x-npy", "tensors/Samples", "step_7.npy"),
])
def test_payloads_become_one_artifact_per_tag_and_step(kind, media_type, folder, filename):
    blob = Blob("file:///b", "b", media_type, 1)
    calls = translate([Record(kind, "Samples", 7, 1.0, blob=blob)]).calls
    assert [call for call in calls if isinstance(call, LogArtifact)] == [LogArtifact(blob, folder, filename)]


def test_images_also_go_to_the_image_view_keyed_by_tag_with_step_and_wall_time_in_ms():
    record = Record(RecordKind.IMAGE, "Weights/Layer1/Image", 20, 1700000000.1234, blob=BLOB)
    assert translate([record]).calls == [LogArtifact(BLOB, "images/Weights/Layer1/Image", "step_20.png"),
                                         LogImage(BLOB, "Weights/Layer1/Image", 20, 1700000000123)]


def test_histograms_keep_their_json_and_get_a_picture_keyed_under_histograms():
    json_blob = Blob("file:///h.json", "f00d", "application/json", 100)
    record = Record(RecordKind.HISTOGRAM, "Weights/Layer1", 3, 1700000000.5, blob=json_blob)
    assert translate([record]).calls == [
        LogArtifact(json_blob, "histograms/Weights/Layer1", "step_3.json"),
        LogImage(json_blob, "histograms/Weights/Layer1", 3, 1700000000500, histogram=True)]
    assert translate([record], histogram_images=False).calls == [
        LogArtifact(json_blob, "histograms/Weights/Layer1", "step_3.json")]


def test_an_images_file_name_is_log_images_own_with_the_payloads_hash_for_the_uuid():
    image = LogImage(Blob("file:///x.png", "0123456789abcdef" + "0" * 48, "image/png", 1), "a/b c", -2, 1700000000123)
    assert image.file_stem == "a~b c+step+-2+timestamp+1700000000123+0123456789abcdef"


@pytest.mark.parametrize(("tag", "key"), [
    ("Weights/Layer1/Image", "Weights/Layer1/Image"),
    ("größe", "gr__e"),
    ("acc (top-1)", "acc _top-1_"),
    ("time: 3", "time_ 3"),
    ("a//b", "a/_/b"),
    ("", "_"),
])
def test_image_keys_are_the_mlflow_name_in_the_ascii_that_image_keys_accept(tag, key):
    assert mlflow_image_key(tag) == key


def test_long_image_keys_keep_a_hash_of_the_original_and_fit_a_file_name():
    first, second = mlflow_image_key("x" * 200 + "a"), mlflow_image_key("x" * 200 + "b")
    assert len(first) == len(second) == 160 and first != second
    stem = LogImage(BLOB, first, -(2**63), 99999999999999).file_stem
    assert len(stem + "+compressed.webp") <= 255


def test_image_keys_that_differ_from_the_tag_are_reported_once_for_a_warning():
    records = [Record(RecordKind.IMAGE, "größe", step, 1.0, blob=BLOB) for step in range(2)]
    translation = translate(records)
    assert translation.renamed_images == {"größe": "gr__e"}
    assert translation.renamed == {}  # the artifact keeps the tag: MLflow's artifact paths take unicode


def test_payloads_of_several_files_keep_their_file_names():
    blob = Blob("file:///b", "b", "text/tab-separated-values", 1)
    record = Record(RecordKind.EMBEDDING, "words", 2, 1.0, blob=blob, filename="metadata.tsv")
    assert translate([record]).calls == [LogArtifact(blob, "embeddings/words/step_2", "metadata.tsv")]
