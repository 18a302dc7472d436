"""Odd input, one row per case: what TensorBoard does, and what reaches MLflow.

For every row, the same call runs once on a plain writer and once with capture on; TensorBoard must behave
exactly the same (same exception, same event-file content), our code must never raise into the loop, and the
value is delivered, or mapped by a documented rule with one warning, or counted as dropped with its reason.

Rows about the session itself (``stop_logging()`` twice or without a start, ``start_logging`` twice) are in
``test_lifecycle.py``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

import tracelet_otel
from tests.support import MlflowStore, event_files, events

MAX = float(np.finfo(np.float64).max)
LONG_TAG = "x" * 300


@dataclass(frozen=True)
class Row:
    name: str
    call: Callable[[SummaryWriter], Any]
    tensorboard: str  # what TensorBoard itself does
    metric: tuple[str, int, float] | None = None  # (key under the row's namespace, step, value) MLflow stores
    mapped_from: str | None = None  # the tag whose mapping is warned about
    raises: type[BaseException] | None = None
    artifact: str | None = None
    dropped: str | None = None


def image(side: int) -> np.ndarray:
    return np.random.default_rng(side).random((3, side, side))


ROWS = [
    Row("nan", lambda w: w.add_scalar("v", float("nan"), 1), "stores NaN", ("v", 1, math.nan)),
    Row("plus_inf", lambda w: w.add_scalar("v", float("inf"), 1), "stores +inf",
        ("v", 1, MAX)),  # MLflow's own mapping of +inf
    Row("minus_inf", lambda w: w.add_scalar("v", float("-inf"), 1), "stores -inf", ("v", 1, -MAX)),
    Row("zero_d_tensor", lambda w: w.add_scalar("v", torch.tensor(0.25), 1), "stores the float", ("v", 1, 0.25)),
    Row("requires_grad", lambda w: w.add_scalar("v", torch.tensor(0.5, requires_grad=True), 1),
        "stores the float (with a torch warning)", ("v", 1, 0.5)),
    Row("numpy_scalar", lambda w: w.add_scalar("v", np.float64(0.125), 1), "stores the float", ("v", 1, 0.125)),
    Row("python_int", lambda w: w.add_scalar("v", 7, 1), "stores 7.0", ("v", 1, 7.0)),
    Row("python_bool", lambda w: w.add_scalar("v", True, 1), "stores 1.0", ("v", 1, 1.0)),
    Row("string", lambda w: w.add_scalar("v", "abc", 1), "raises ValueError", raises=ValueError),
    Row("none", lambda w: w.add_scalar("v", None, 1), "raises NotImplementedError", raises=NotImplementedError),
    Row("two_elements", lambda w: w.add_scalar("v", torch.tensor([1.0, 2.0]), 1), "raises AssertionError",
        raises=AssertionError),
    Row("step_none", lambda w: w.add_scalar("v", 1.0), "stores step 0", ("v", 0, 1.0)),
    Row("step_negative", lambda w: w.add_scalar("v", 1.0, -5), "stores step -5", ("v", -5, 1.0)),
    Row("step_2_62", lambda w: w.add_scalar("v", 1.0, 2**62), "stores step 2**62", ("v", 2**62, 1.0)),
    Row("step_2_64", lambda w: w.add_scalar("v", 1.0, 2**64), "raises ValueError (out of int64)", raises=ValueError),
    Row("empty_tag", lambda w: w.add_scalar("", 1.0, 1), "stores tag ''", ("_", 1, 1.0), mapped_from="empty_tag/"),
    Row("rejected_characters", lambda w: w.add_scalar("acc (top-1)", 1.0, 1), "stores it",
        ("acc _top-1_", 1, 1.0), mapped_from="rejected_characters/acc (top-1)"),
    Row("long_tag", lambda w: w.add_scalar(LONG_TAG, 1.0, 1), "stores it", None,
        mapped_from=f"long_tag/{LONG_TAG}"),
    Row("unicode_tag", lambda w: w.add_scalar("größe/ähnlichkeit", 1.0, 1), "stores it",
        ("größe/ähnlichkeit", 1, 1.0)),
    Row("emoji_tag", lambda w: w.add_scalar("loss 🚀", 1.0, 1), "stores it", ("loss _", 1, 1.0),
        mapped_from="emoji_tag/loss 🚀"),
    Row("large_image", lambda w: w.add_image("big", image(256), 1), "stores the PNG",
        artifact="images/large_image/big/step_1.png"),
    Row("video_over_limit", lambda w: w.add_video("clip", np.random.default_rng(0).integers(
        0, 255, (1, 8, 3, 128, 128), dtype=np.uint8), 1), "stores the GIF",
        dropped="above max_image_size and cannot be downscaled"),
    Row("image_wrong_shape", lambda w: w.add_image("bad", np.zeros((5, 4)), 1), "raises AssertionError",
        raises=AssertionError),
    Row("text_surrogates", lambda w: w.add_text("t", "bad \ud800 text", 1), "raises UnicodeEncodeError",
        raises=UnicodeEncodeError),
    Row("text_10mb", lambda w: w.add_text("t", "x" * 10_000_000, 1), "stores it",
        artifact="text/text_10mb/t/step_1.txt"),
    Row("after_close", lambda w: (w.close(), w.add_scalar("v", 2.0, 3)), "reopens the writer and stores it",
        ("v", 3, 2.0)),
]


def outcome(row: Row, logdir: str) -> tuple[str | None, list[tuple[int, bytes]]]:
    """What TensorBoard did: the exception, and every value it wrote (without wall times)."""
    writer = SummaryWriter(logdir)
    try:
        row.call(writer)
        error = None
    except Exception as exception:
        error = f"{type(exception).__name__}: {exception}"
    writer.close()
    written = [(event.step, value.SerializeToString()) for path in event_files(logdir) for event in events(path)
               for value in event.summary.value]
    return error, sorted(written)


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    directory = tmp_path_factory.mktemp("bad-input")
    previous = os.getcwd()
    os.chdir(directory)
    plain = {row.name: outcome(row, str(directory / "plain" / row.name)) for row in ROWS}
    warnings = Warnings()
    logging.getLogger("tracelet_otel").addHandler(warnings)
    store = MlflowStore(f"sqlite:///{directory / 'mlflow.db'}")
    try:
        tracelet_otel.start_logging("bad-input", "tables", config={
            "mlflow_tracking_uri": store.uri, "tensorboard_log_dir": str(directory / "captured"),
            "max_image_size": "50KB"})
        captured = {row.name: outcome(row, str(directory / "captured" / row.name)) for row in ROWS}
        run = tracelet_otel.stop_logging()
    finally:
        logging.getLogger("tracelet_otel").removeHandler(warnings)
        os.chdir(previous)
    return {"plain": plain, "captured": captured, "run": run, "store": store, "warnings": warnings.messages}


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_bad_input(row: Row, table):
    run, store = table["run"], table["store"]
    run_id = run.backends["mlflow"].run_id

    assert table["captured"][row.name] == table["plain"][row.name], "TensorBoard behaved differently"
    error = table["captured"][row.name][0]
    assert (error is not None) == (row.raises is not None), error
    if row.raises is not None:
        assert error.startswith(row.raises.__name__)
        assert not any(key.startswith(f"{row.name}/") for key in store.run(run_id).data.metrics)
    if row.metric is not None:
        key, step, value = row.metric
        (point,) = store.client.get_metric_history(run_id, f"{row.name}/{key}")
        assert point.step == step
        assert (math.isnan(point.value) and math.isnan(value)) or point.value == value
    if row.mapped_from is not None:
        assert sum(row.mapped_from in message for message in table["warnings"]) == 1, table["warnings"]
    if row.artifact is not None:
        data = store.read_artifact(run_id, row.artifact)
        assert 0 < len(data) <= (50_000 if "image" in row.name else len(data))
    if row.dropped is not None:
        assert run.capture["dropped"][row.dropped] == 1
        assert sum(f"not delivered: {row.dropped}" in message for message in table["warnings"]) == 1


def test_every_dropped_value_is_counted_and_nothing_is_left_undelivered(table):
    run = table["run"]
    assert sum(run.capture["dropped"].values()) == sum(row.dropped is not None for row in ROWS)
    assert run.delivery["mlflow"]["undelivered"] == 0 and run.delivery["mlflow"]["dropped"] == {}
