"""The W&B translation is pure: records in, calls out; no wandb, no I/O."""

from __future__ import annotations

import math

import pytest

from tracelet_otel.records import Blob, Record, RecordKind
from tracelet_otel_wandb._translate import (
    LogRow,
    Media,
    SaveFile,
    UpdateConfig,
    pr_curve_table,
    text_html,
    translate,
    wandb_key,
)

PNG = Blob("file:///store/ab/ab.png", "ab", "image/png", 10)


def scalar(tag: str, value: float, step: int, wall_time: float = 1700000000.0) -> Record:
    return Record(RecordKind.SCALAR, tag, step, wall_time, value=value)


def rows(records: list[Record]) -> list[dict]:
    return [call.values for call in translate(records).calls if isinstance(call, LogRow)]


def test_records_of_one_step_share_a_row_with_the_step_as_global_step_and_no_wandb_step():
    records = [scalar("loss", 0.5, 0, 1.0), scalar("acc", 0.1, 0, 2.0), scalar("loss", 0.4, 1, 3.0),
               scalar("acc", 0.2, 1, 4.0)]
    assert rows(records) == [{"global_step": 0, "_timestamp": 2.0, "loss": 0.5, "acc": 0.1},
                             {"global_step": 1, "_timestamp": 4.0, "loss": 0.4, "acc": 0.2}]


def test_many_scalars_over_few_tags_become_one_row_per_step():
    records = [scalar(f"tag{t}", float(step), step) for step in range(1000) for t in range(10)]
    assert len(rows(records)) == 1000


def test_a_repeated_or_backward_step_gets_a_row_of_its_own_so_nothing_is_dropped():
    records = [scalar("x", 1.0, 50, 1.0), scalar("x", 2.0, 10, 2.0), scalar("x", 3.0, 10, 3.0),
               scalar("y", 4.0, 10, 4.0)]
    assert rows(records) == [{"global_step": 50, "_timestamp": 1.0, "x": 1.0},
                             {"global_step": 10, "_timestamp": 2.0, "x": 2.0},
                             {"global_step": 10, "_timestamp": 4.0, "x": 3.0, "y": 4.0}]


def test_a_row_keeps_the_wall_time_of_its_latest_record_exactly():
    (row,) = rows([scalar("a", 1.0, 3, 1700000000.123456789), scalar("b", 2.0, 3, 1700000000.0)])
    assert row["_timestamp"] == 1700000000.123456789


def test_nan_and_infinities_are_kept():
    (row,) = rows([scalar("nan", math.nan, 0), scalar("inf", math.inf, 0), scalar("-inf", -math.inf, 0)])
    assert math.isnan(row["nan"]) and row["inf"] == math.inf and row["-inf"] == -math.inf


@pytest.mark.parametrize(("tag", "key"), [
    ("Loss/Train/CrossEntropy", "Loss/Train/CrossEntropy"),
    ("acc (top-1) 🚀", "acc (top-1) 🚀"),
    ("global_step", "tb/global_step"),
    ("_step", "tb/_step"),
    ("_timestamp", "tb/_timestamp"),
    ("", "tb/"),
])
def test_keys_are_the_tags_except_those_wandb_keeps_for_itself(tag, key):
    assert wandb_key(tag) == key


def test_renamed_tags_are_reported_once_for_a_warning():
    translation = translate([scalar("_step", 1.0, 0), scalar("_step", 2.0, 1), scalar("fine", 1.0, 0)])
    assert translation.renamed == {"_step": "tb/_step"}
    assert [call.values.get("tb/_step") for call in translation.calls] == [1.0, 2.0]


@pytest.mark.parametrize("kind", [RecordKind.IMAGE, RecordKind.VIDEO, RecordKind.AUDIO, RecordKind.HISTOGRAM,
                                  RecordKind.TEXT, RecordKind.PR_CURVE])
def test_media_join_the_row_of_their_step(kind):
    records = [scalar("loss", 0.5, 7), Record(kind, "Samples", 7, 1.0, blob=PNG)]
    assert rows(records) == [{"global_step": 7, "_timestamp": 1700000000.0, "loss": 0.5,
                              "Samples": Media(kind, PNG)}]


def test_hparams_update_the_config_and_keep_each_calls_values_as_a_file():
    first = Record(RecordKind.HPARAMS, "hparams", 0, 1.0, params={"lr": 0.1, "opt": "sgd"}, blob=PNG,
                   filename="1700000000.5.json")
    second = Record(RecordKind.HPARAMS, "hparams", 0, 2.0, writer="tbx", params={"lr": 0.2, "drop": 0.5},
                    blob=PNG, filename="run.json")
    assert translate([first, second]).calls == [UpdateConfig({"lr": 0.2, "opt": "sgd", "drop": 0.5}),
                                               SaveFile(PNG, "hparams/1700000000.5.json"),
                                               SaveFile(PNG, "hparams/tbx/run.json")]


@pytest.mark.parametrize(("kind", "media_type", "filename", "path"), [
    (RecordKind.GRAPH, "text/x-protobuf", "graph.pbtxt", "graphs/net/step_2/graph.pbtxt"),
    (RecordKind.EMBEDDING, "text/tab-separated-values", "metadata.tsv", "embeddings/net/step_2/metadata.tsv"),
    (RecordKind.MESH, "application/x-npy", "vertex.npy", "meshes/net/step_2/vertex.npy"),
    (RecordKind.CUSTOM_SCALARS, "application/json", None, "custom_scalars/net/step_2.json"),
    (RecordKind.TENSOR, "application/x-npy", None, "tensors/net/step_2.npy"),
])
def test_payloads_wandb_has_no_type_for_become_files(kind, media_type, filename, path):
    blob = Blob("file:///b", "b", media_type, 1)
    assert translate([Record(kind, "net", 2, 1.0, blob=blob, filename=filename)]).calls == [SaveFile(blob, path)]


def test_file_paths_never_leave_their_folder():
    blob = Blob("file:///b", "b", "application/x-npy", 1)
    (call,) = translate([Record(RecordKind.TENSOR, "../../etc//x", 0, 1.0, blob=blob)]).calls
    assert call.path == "tensors/__/__/etc/_/x/step_0.npy"


def test_text_becomes_escaped_html_that_keeps_line_breaks():
    assert text_html("a < b\n**bold**") == '<pre style="white-space: pre-wrap">a &lt; b\n**bold**</pre>'


def test_a_pr_curve_becomes_one_table_row_per_threshold():
    curve = {"true_positives": [3, 1, 0], "false_positives": [2, 1, 0], "true_negatives": [0, 1, 2],
             "false_negatives": [0, 2, 3], "precision": [0.6, 0.5, 1.0], "recall": [1.0, 0.33, 0.0]}
    columns, table = pr_curve_table(curve)
    assert columns == ["threshold", "precision", "recall", "true_positives", "false_positives", "true_negatives",
                       "false_negatives"]
    assert table == [[0.0, 0.6, 1.0, 3, 2, 0, 0], [0.5, 0.5, 0.33, 1, 1, 1, 2], [1.0, 1.0, 0.0, 0, 0, 2, 3]]


def test_scalars_without_a_value_and_records_without_payload_are_skipped():
    assert translate([Record(RecordKind.SCALAR, "x", 0, 1.0), Record(RecordKind.GRAPH, "g", 0, 1.0)]).calls == []
