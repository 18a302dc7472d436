"""Records -> W&B calls: pure functions, no wandb import, no I/O.

**Rows.** W&B drops a row logged with a ``step=`` below the last one, and TensorBoard steps are per tag: they
repeat and go back. So no row is logged with ``step=``. Every row carries ``global_step`` (the TensorBoard
step), which the run declares the step metric of every key (``define_metric``), and W&B's own ``_step`` only
counts rows. A batch's records become rows in order: a record joins the open row of its step unless that row
already holds its key; then a new row opens for that step. So 100k scalars over 10 tags are 10k rows, a
repeated or backward step gets a row of its own, and no value is dropped.

**Wall time.** A row's ``_timestamp`` (W&B's wall-time axis; W&B's own TensorBoard sync sets it the same way)
is the TensorBoard wall time of the latest record in the row. Records merged into one row were written at the
same step; their own wall times stay exact in the event files and the OpenTelemetry span events.

**Keys** are the tags, ``/`` hierarchy kept (W&B groups panels by the first segment). A tag W&B keeps for
itself (starting with ``_``, like ``_step``), the step metric ``global_step``, or an empty tag is prefixed
``tb/``, with one warning per tag.

**Values.** Scalars as they are (NaN and +/-inf included). Images -> ``wandb.Image`` (TensorBoard's PNG, byte
for byte), videos -> ``wandb.Video`` (its GIF), audio -> ``wandb.Audio`` (its WAV), histograms ->
``wandb.Histogram`` of the bars TensorBoard's own view draws (``Histogram.bars``: 30 bins, within the 512
W&B takes), text -> ``wandb.Html``
(:func:`text_html`), PR curves -> ``wandb.Table`` (:func:`pr_curve_table`): all in the row of their step.
hparams -> the run config (their metrics are scalars like any other), and each ``add_hparams`` call's values as
a file. Graphs, embeddings, meshes, custom scalar layouts and other tensors -> files in the run, where every
tracker files them (``tracelet_otel.backends.payload_path``), as W&B has no type for them.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracelet_otel.backends import Blob, ParamValue, Record, RecordKind, payload_path

__all__ = ["STEP_KEY", "WALL_TIME_KEY", "ConsoleLine", "LogRow", "Media", "SaveFile", "Translation", "UpdateConfig",
           "pr_curve_table", "text_html", "translate", "wandb_key"]

STEP_KEY = "global_step"
WALL_TIME_KEY = "_timestamp"
RESERVED_TAG_PREFIX = "tb/"

MEDIA_KINDS = frozenset({RecordKind.IMAGE, RecordKind.VIDEO, RecordKind.AUDIO, RecordKind.HISTOGRAM, RecordKind.TEXT,
                         RecordKind.PR_CURVE})
PR_CURVE_COLUMNS = ("threshold", "precision", "recall", "true_positives", "false_positives", "true_negatives",
                    "false_negatives")


@dataclass(frozen=True, slots=True)
class Media:
    """A payload that becomes a W&B media object in its row (see the module docstring for the type)."""

    kind: RecordKind
    blob: Blob


@dataclass(frozen=True, slots=True)
class LogRow:
    """One ``run.log`` call, without ``step=``; ``values`` already holds ``global_step`` and ``_timestamp``."""

    values: dict[str, float | Media]


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    values: dict[str, ParamValue]


@dataclass(frozen=True, slots=True)
class SaveFile:
    blob: Blob
    path: str  # relative to the run's files directory


@dataclass(frozen=True, slots=True)
class ConsoleLine:
    """A line of the training process's console, for the run's Logs."""

    text: str
    stderr: bool
    wall_time: float


Call = LogRow | UpdateConfig | SaveFile | ConsoleLine


@dataclass
class Translation:
    calls: list[Call] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # tag -> W&B key, for one warning each


def wandb_key(tag: str) -> str:
    if tag == "" or tag == STEP_KEY or tag.startswith("_"):
        return RESERVED_TAG_PREFIX + tag
    return tag


def translate(records: Iterable[Record]) -> Translation:
    translation = Translation()
    rows: list[dict[str, Any]] = []
    open_rows: dict[int, dict[str, Any]] = {}  # step -> the row a record of that step joins
    params: dict[str, ParamValue] = {}
    files: list[SaveFile] = []
    console: list[ConsoleLine] = []

    for record in records:
        if record.kind is RecordKind.CONSOLE:
            console.append(ConsoleLine(record.text or "", record.tag == "stderr", record.wall_time))
            continue
        if record.kind is RecordKind.HPARAMS:
            params.update(record.params or {})
        if record.kind is RecordKind.SCALAR:
            if record.value is None:
                continue
            value: float | Media = record.value
        elif record.kind in MEDIA_KINDS and record.blob is not None:
            value = Media(record.kind, record.blob)
        else:
            if record.blob is not None:
                files.append(SaveFile(record.blob, payload_path(record).path))
            continue
        key = wandb_key(record.tag)
        if key != record.tag:
            translation.renamed[record.tag] = key
        row = open_rows.get(record.step)
        if row is None or key in row:
            row = {STEP_KEY: record.step, WALL_TIME_KEY: record.wall_time}
            open_rows[record.step] = row
            rows.append(row)
        row[key] = value
        row[WALL_TIME_KEY] = max(row[WALL_TIME_KEY], record.wall_time)

    if params:
        translation.calls.append(UpdateConfig(params))
    translation.calls.extend(LogRow(row) for row in rows)
    translation.calls.extend(files)
    translation.calls.extend(console)
    return translation


def text_html(text: str) -> str:
    """TensorBoard text as W&B HTML: escaped, whitespace and line breaks kept."""
    return f'<pre style="white-space: pre-wrap">{html.escape(text)}</pre>'


def pr_curve_table(curve: Mapping[str, list[float]]) -> tuple[list[str], list[list[float]]]:
    """A PR curve's rows (the JSON ``tracelet-otel`` stores) -> table columns and one row per threshold.

    TensorBoard's thresholds are evenly spaced on [0, 1]: threshold ``i`` of ``n`` is ``i / (n - 1)``.
    """
    count = len(curve["precision"])
    thresholds = [i / (count - 1) if count > 1 else 0.0 for i in range(count)]
    columns = [thresholds, *(curve[name] for name in PR_CURVE_COLUMNS[1:])]
    return list(PR_CURVE_COLUMNS), [list(row) for row in zip(*columns, strict=True)]
