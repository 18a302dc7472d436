"""The ClearML translation is a pure function: records in, calls out. No ClearML, no files."""

from __future__ import annotations

import math

import pytest

from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel_clearml._source import project_name, script_fields, training_properties
from tracelet_otel_clearml._translate import (
    ConnectHparams,
    ReportHistogram,
    ReportImage,
    ReportMedia,
    ReportPrCurve,
    ReportScalar,
    ReportText,
    UploadArtifact,
    pr_curve_points,
    title_series,
    translate,
)


def blob(media_type: str = "image/png") -> Blob:
    return Blob("file:///store/ab/abc", "abc", media_type, 10)


WALL_TIME = 1700000000.5  # TensorBoard's: ClearML's event timestamp, never the time of delivery


def scalar(tag: str, value: float = 1.0, step: int = 0) -> Record:
    return Record(RecordKind.SCALAR, tag, step, WALL_TIME, value=value)


@pytest.mark.parametrize(("tag", "expected"), [
    ("Loss/Train/CrossEntropy", ("Loss/Train", "CrossEntropy")),
    ("validation/loss", ("validation", "loss")),
    ("loss", ("loss", "loss")),  # ClearML's binding: no "/" -> the tag is title and series
    ("/leading", ("/leading", "leading")),  # an empty title falls back to the tag, as in the binding
    ("a_b/c", ("a_b", "c")),
    ("a/b/c", ("a/b", "c")),  # not "a_b" as the binding joins it: that would merge it with a_b/c
])
def test_tags_split_at_the_last_slash_into_title_and_series(tag, expected):
    assert title_series(tag) == expected


def test_scalars_keep_their_step_as_iteration_including_repeated_and_decreasing_steps():
    records = [scalar("odd/out_of_order", 1.0, 50), scalar("odd/out_of_order", 2.0, 10),
               scalar("odd/out_of_order", 3.0, 10), scalar("loss", 0.25, -1)]
    assert translate(records).calls == [
        ReportScalar("odd", "out_of_order", 50, 1.0, WALL_TIME), ReportScalar("odd", "out_of_order", 10, 2.0,
                                                                              WALL_TIME),
        ReportScalar("odd", "out_of_order", 10, 3.0, WALL_TIME), ReportScalar("loss", "loss", -1, 0.25, WALL_TIME)]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_scalars_become_console_lines_never_a_silent_zero(value):
    translation = translate([scalar("odd/bad", value, 100)])
    assert translation.calls == [ReportText(f"tracelet-otel: scalar 'odd/bad' is {value} at step 100 "
                                            "(ClearML cannot plot NaN or inf; not plotted)")]
    assert translation.non_finite == {"odd/bad"}


def test_text_is_a_console_line_naming_tag_and_step():
    text = blob("text/plain")
    assert translate([Record(RecordKind.TEXT, "Notes", 10, 1.0, blob=text)]).calls == [
        ReportText("Notes (step 10): ", text)]


def test_images_audio_and_video_become_debug_samples():
    image, audio, video = blob("image/png"), blob("audio/wav"), blob("image/gif")
    found = translate([Record(RecordKind.IMAGE, "Predictions", 0, 1.0, blob=image),
                       Record(RecordKind.AUDIO, "sound/clip", 3, 2.0, blob=audio),
                       Record(RecordKind.VIDEO, "rollout", 4, 3.0, blob=video)]).calls
    assert found == [ReportImage("Predictions", "Predictions", 0, image, 1.0),
                     ReportMedia("sound", "clip", 3, audio, 2.0, ".wav"),
                     ReportMedia("rollout", "rollout", 4, video, 3.0, ".gif")]


def test_histograms_and_pr_curves_become_plots():
    histogram, curve = blob("application/json"), blob("application/json")
    calls = translate([Record(RecordKind.HISTOGRAM, "Weights/Layer1", 20, 1.0, blob=histogram),
                       Record(RecordKind.PR_CURVE, "pr", 2, 2.0, blob=curve)]).calls
    assert calls == [ReportHistogram("Weights", "Layer1", 20, histogram, 1.0),
                     ReportPrCurve("pr", "pr", 2, curve, 2.0)]


def test_hparams_are_connected_and_kept_per_call_as_artifacts():
    values = blob("application/json")
    record = Record(RecordKind.HPARAMS, "hparams", 0, 1.0, writer="tbx", blob=values, filename="1700000000.5.json",
                    params={"lr": 0.1, "batch": 64, "optimizer": "sgd", "flag": True})
    assert translate([record]).calls == [
        ConnectHparams((("lr", 0.1), ("batch", 64), ("optimizer", "sgd"), ("flag", True))),
        UploadArtifact("hparams/tbx/1700000000.5.json", values, "1700000000.5.json")]


@pytest.mark.parametrize(("kind", "media_type", "name", "filename"), [
    (RecordKind.GRAPH, "text/x-protobuf", "graphs/model/step_0.pbtxt", "step_0.pbtxt"),
    (RecordKind.CUSTOM_SCALARS, "application/json", "custom_scalars/model/step_0.json", "step_0.json"),
    (RecordKind.TENSOR, "application/x-npy", "tensors/model/step_0.npy", "step_0.npy"),
])
def test_payloads_clearml_has_no_type_for_become_artifacts(kind, media_type, name, filename):
    payload = blob(media_type)
    assert translate([Record(kind, "model", 0, 1.0, blob=payload)]).calls == [UploadArtifact(name, payload, filename)]


def test_payloads_of_several_files_keep_their_file_names():
    payload = blob("text/tab-separated-values")
    record = Record(RecordKind.EMBEDDING, "words", 2, 1.0, blob=payload, filename="metadata.tsv")
    assert translate([record]).calls == [UploadArtifact("embeddings/words/step_2/metadata.tsv", payload,
                                                        "metadata.tsv")]


def test_pr_curves_become_recall_precision_points_where_both_are_finite():
    curve = {"precision": [1.0, 0.5, math.nan], "recall": [0.0, 1.0, 1.0]}
    assert pr_curve_points(curve) == [[0.0, 1.0], [1.0, 0.5]]


def test_the_training_process_becomes_the_tasks_script_relative_to_its_repository():
    source = {"program": "/repo/train/main.py", "args": ["--lr", "0.1"], "cwd": "/repo/train", "user": "ada",
              "host": "gpu1", "pid": 42, "git_commit": "abc123", "git_branch": "main",
              "git_remote": "git@github.com:org/vision.git"}
    assert script_fields(source, "/repo") == {"repository": "git@github.com:org/vision.git", "branch": "main",
                                              "version_num": "abc123", "working_dir": "train",
                                              "entry_point": "main.py"}
    assert training_properties(None, source) == {
        "training_command": "/repo/train/main.py --lr 0.1", "training_user": "ada",
        "training_host": "gpu1", "training_pid": "42", "training_cwd": "/repo/train"}
    assert project_name(None, source) == "vision" and project_name("mine", source) == "mine"


def test_a_script_outside_a_repository_keeps_absolute_paths():
    source = {"program": "/home/ada/train.py", "args": [], "cwd": "/tmp"}
    assert script_fields(source, None) == {"repository": "", "branch": "", "version_num": "", "working_dir": "/tmp",
                                           "entry_point": "/home/ada/train.py"}
    assert project_name(None, source) == "Untitled"
