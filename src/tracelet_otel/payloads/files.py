"""Payloads as a backend uses them: their bytes, a local file, the JSON they hold, and the path they are filed
under in a tracker's files.

**Paths** (:func:`payload_path`), the same in every tracker that keeps files: ``<folder>/<tag>/step_<step><ext>``;
``<folder>/<tag>/step_<step>/<file>`` for a payload of several files (embeddings, mesh components, a graph);
``hparams/<writer>/<run>.json`` for an ``add_hparams`` call, named after the TensorBoard run it made. The folder
is the kind's (:data:`PAYLOAD_FOLDERS`). A path segment that could leave its folder or vanish (``..``, ``.``,
empty) becomes ``__``, ``_``, ``_``, so ``a//b`` never merges with ``a/b``; a tracker with stricter names maps
the tag first (MLflow, ``tag=``).

A payload missing from its store raises :class:`~tracelet_otel.errors.PayloadMissing` (the record is dropped,
counted under one reason for every backend); one that is not what its record says raises
:class:`~tracelet_otel.errors.RecordRejected`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any, NamedTuple

import fsspec

from tracelet_otel.errors import PayloadMissing, RecordRejected
from tracelet_otel.payloads.histograms import Histogram
from tracelet_otel.payloads.store import extension
from tracelet_otel.records import Blob, Record, RecordKind

__all__ = ["PAYLOAD_FOLDERS", "PayloadPath", "local_file", "payload_path", "read_blob", "read_histogram",
           "read_json", "save_blob"]

PAYLOAD_FOLDERS = {
    RecordKind.IMAGE: "images",
    RecordKind.VIDEO: "videos",
    RecordKind.AUDIO: "audio",
    RecordKind.TEXT: "text",
    RecordKind.HISTOGRAM: "histograms",
    RecordKind.GRAPH: "graphs",
    RecordKind.PR_CURVE: "pr_curves",
    RecordKind.EMBEDDING: "embeddings",
    RecordKind.MESH: "meshes",
    RecordKind.CUSTOM_SCALARS: "custom_scalars",
    RecordKind.TENSOR: "tensors",
    RecordKind.HPARAMS: "hparams",
}
"""The folder a payload of each kind is filed under wherever a tracker keeps files."""

_UNSAFE_SEGMENTS = {"": "_", ".": "_", "..": "__"}


class PayloadPath(NamedTuple):
    folder: str
    filename: str

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.filename}"


def payload_path(record: Record, tag: Callable[[str], str] = str) -> PayloadPath:
    """Where ``record``'s payload is filed in a tracker (the module docstring has the rule); ``tag`` maps the
    tag to a name the tracker accepts."""
    assert record.blob is not None
    folder = PAYLOAD_FOLDERS[record.kind]
    if record.kind is RecordKind.HPARAMS:
        return PayloadPath(_join(folder, record.writer), _safe(record.filename or f"step_{record.step}.json"))
    if record.filename:
        return PayloadPath(_join(folder, tag(record.tag), f"step_{record.step}"), _safe(record.filename))
    return PayloadPath(_join(folder, tag(record.tag)), f"step_{record.step}{extension(record.blob.media_type)}")


def _join(*parts: str) -> str:
    return "/".join(_safe(segment) for part in parts if part for segment in part.split("/"))


def _safe(segment: str) -> str:
    return _UNSAFE_SEGMENTS.get(segment, segment)


def read_blob(blob: Blob) -> bytes:
    try:
        with fsspec.open(blob.uri, "rb") as file:
            data: bytes = file.read()
            return data
    except FileNotFoundError as error:
        raise PayloadMissing(f"payload {blob.uri} is missing from its store") from error


def _local_path(blob: Blob) -> str | None:
    fs, path = fsspec.core.url_to_fs(blob.uri)
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return path if "file" in protocols and os.path.exists(path) else None


def local_file(blob: Blob, scratch: str) -> str:
    """A file on this machine that holds the payload, named with its extension (trackers infer formats from it):
    the store's own file where the store is local, else a copy in the directory ``scratch``."""
    path = _local_path(blob)
    if path is not None and path.endswith(extension(blob.media_type)):
        return path
    target = os.path.join(scratch, blob.sha256 + extension(blob.media_type))
    if not os.path.exists(target):
        save_blob(blob, target)
    return target


def save_blob(blob: Blob, target: str) -> None:
    """Copy the payload to the file ``target`` (its directory is created)."""
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    source = _local_path(blob)
    if source is not None:
        shutil.copyfile(source, target)
        return
    data = read_blob(blob)
    with open(target, "wb") as file:
        file.write(data)


def read_json(blob: Blob) -> Any:
    data = read_blob(blob)
    try:
        return json.loads(data)
    except ValueError as error:
        raise RecordRejected(f"payload {blob.uri} is not JSON: {error}") from None


def read_histogram(blob: Blob) -> Histogram:
    body = read_json(blob)
    try:
        return Histogram.from_json(body)
    except ValueError as error:
        raise RecordRejected(f"payload {blob.uri}: {error}") from None
