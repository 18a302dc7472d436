"""The MLflow translation is a pure function: records in, calls out."""

from __future__ import annotations

import math

import pytest
from mlflow.utils.validation import _validate_metric_name

from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel_mlflow._translate import LogArtifact, LogBatch, MetricPoint, mlflow_name, translate

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


def test_hparams_become_params_with_integral_numbers_as_integers():
    record = Record(RecordKind.HPARAMS, "hparams", 0, 1.0, params={"lr": 0.1, "batch": 64.0, "opt": "adam",
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
    assert translate([Record(kind, "Samples", 7, 1.0, blob=blob)]).calls == [LogArtifact(blob, folder, filename)]


def test_payloads_of_several_files_keep_their_file_names():
    blob = Blob("file:///b", "b", "text/tab-separated-values", 1)
    record = Record(RecordKind.EMBEDDING, "words", 2, 1.0, blob=blob, filename="metadata.tsv")
    assert translate([record]).calls == [LogArtifact(blob, "embeddings/words/step_2", "metadata.tsv")]
