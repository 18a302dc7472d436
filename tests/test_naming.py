"""How writers become namespaces (docs/semantic-conventions.md)."""

from __future__ import annotations

import pytest

from tracelet_otel.naming import WriterName, WriterNames, call_of_event_file


def test_the_root_keeps_tags_and_writers_below_it_are_namespaced():
    names = WriterNames("/work/runs")
    assert names.resolve("/work/runs", None).tag("Loss/Train") == "Loss/Train"
    assert names.resolve("/work/runs/validation", None).tag("loss") == "validation/loss"


def test_without_a_root_the_first_writer_is_the_root_and_siblings_are_named_from_the_shared_parent():
    names = WriterNames(None)
    assert names.resolve("/work/runs/train", None) == WriterName("")
    assert names.resolve("/work/runs/validation", None) == WriterName("validation")


def test_add_scalars_writers_are_named_after_the_writer_called_torch_and_tensorboardx():
    names = WriterNames("/r")
    torch_style = names.resolve("/r/val/Loss_Group_a", ("scalars", "Loss/Group", ["a", "b"]))
    tbx_style = names.resolve("/r/val/Loss/Group/a", ("scalars", "Loss/Group", ["a", "b"]))
    assert torch_style.tag("Loss/Group") == tbx_style.tag("Loss/Group") == "val/Loss/Group/a"


def test_the_longest_matching_key_wins():
    names = WriterNames("/r")
    assert names.resolve("/r/g_ba", ("scalars", "g", ["a", "ba"])).tag("g") == "g/ba"


def test_add_hparams_metrics_belong_to_the_writer_called():
    names = WriterNames("/r")
    assert names.resolve("/r/1700000000.5", ("hparams",)).tag("hparam/acc") == "hparam/acc"


@pytest.mark.parametrize(("writer_dir", "tag", "plugin", "name"), [
    ("", "loss", "", "loss"),  # the run's own files keep their tags
    ("validation", "loss", "", "validation/loss"),
    ("val/Loss_Group_a", "Loss/Group", "", "val/Loss/Group/a"),  # torch's add_scalars directory
    ("val/Loss/Group/a", "Loss/Group", "", "val/Loss/Group/a"),  # tensorboardX's
    ("1700000000.5", "_hparams_/experiment", "hparams", "hparam/acc"),  # add_hparams's, named as live
])
def test_event_files_read_from_disk_get_the_names_the_live_capture_gives(writer_dir, tag, plugin, name):
    call = call_of_event_file(writer_dir, tag, plugin)
    writer = WriterNames("/r").resolve(f"/r/{writer_dir}".rstrip("/"), call)
    assert writer.tag("hparam/acc" if plugin == "hparams" else tag) == name
