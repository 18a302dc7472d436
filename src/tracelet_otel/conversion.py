"""From captured TensorBoard events to records: the one place that reads TensorBoard's protos.

Runs in the agent process. Payloads go to the artifact store; what ``capture_*`` excludes, what cannot fit
``max_image_size``, and payloads the run's store has no room for (``max_spool_size``) are counted as dropped
with their reason and warned about once per tag.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from google.protobuf import json_format, text_format
from tensorboard.compat.proto import event_pb2, graph_pb2

from tracelet_otel._logging import OnceLogger
from tracelet_otel.config import Options
from tracelet_otel.errors import PayloadStoreFull
from tracelet_otel.naming import WriterName, WriterNames
from tracelet_otel.payloads import ArtifactStore
from tracelet_otel.records import Blob, ParamValue, Record, RecordKind
from tracelet_otel.reports import DropReason

__all__ = ["EventConverter"]

_logger = logging.getLogger("tracelet_otel.conversion")

_MESH_COMPONENTS = {1: "VERTEX", 2: "FACE", 3: "COLOR"}
_START = event_pb2.SessionLog.START


def _number(value: float) -> int | float:
    """TensorBoard stores every number hparam as a double, so ``batch_size=32`` comes back as 32.0: a whole
    number is given as an int, in every tracker alike (MLflow "32", W&B and ClearML 32)."""
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


MAX_CONSOLE_LINE_BYTES = 2**16  # a longer line without a newline is a line of its own


class EventConverter:
    def __init__(self, options: Options, store: ArtifactStore, rank: int | None = None) -> None:
        self._options = options
        self._store = store
        self._rank = rank
        self._names = WriterNames(options.tensorboard_log_dir)
        self._writers: dict[int, WriterName] = {}
        self.dropped: Counter[str] = Counter()
        self._warnings = OnceLogger(_logger)
        self._unfinished: dict[int, bytes] = {}  # fd -> the console line still waiting for its newline

    @property
    def root(self) -> str | None:
        """The logdir whose tags stay verbatim: ``tensorboard_log_dir``, else the first writer's."""
        return self._names.root

    # -- journal frames, or event files ----------------------------------------------------------------------
    def register_writer(self, body: dict[str, Any]) -> None:
        self._writers[body["id"]] = self._names.resolve(body["logdir"], body.get("call"))

    def console(self, fd: int, wall_time: float, data: bytes) -> list[Record]:
        """The lines that ``data``, written to fd 1 or 2, completes; the rest waits for its newline. A line is
        what a terminal shows of it: a progress bar that redraws itself with carriage returns is its last
        drawing, not one line per redraw."""
        lines = (self._unfinished.pop(fd, b"") + data).split(b"\n")
        rest = lines.pop()
        if b"\r" in rest:
            rest = rest[rest.rfind(b"\r") :]  # what the next write draws over
        if len(rest) > MAX_CONSOLE_LINE_BYTES:
            lines.append(rest)
        elif rest:
            self._unfinished[fd] = rest
        return [self._console_line(fd, line, wall_time) for line in lines]

    def console_end(self, wall_time: float) -> list[Record]:
        """The lines still without their newline when the run ends."""
        lines = [self._console_line(fd, line, wall_time) for fd, line in sorted(self._unfinished.items())]
        self._unfinished.clear()
        return [line for line in lines if line.text]

    def _console_line(self, fd: int, line: bytes, wall_time: float) -> Record:
        shown = line.rstrip(b"\r").rpartition(b"\r")[2]
        return Record(RecordKind.CONSOLE, "stderr" if fd == 2 else "stdout", 0, wall_time, rank=self._rank,
                      text=shown.decode("utf-8", "replace"))

    def convert_event(self, writer_id: int, event_bytes: bytes) -> list[Record]:
        return self.convert(writer_id, event_pb2.Event.FromString(event_bytes))

    def convert(self, writer_id: int, event: Any) -> list[Record]:
        """The records of one parsed ``Event`` of a registered writer."""
        name = self._writers[writer_id]
        try:
            return list(self._records(event, name))
        except PayloadStoreFull as full:  # a graph or run metadata: one payload, the event's only value
            self._drop(event.WhichOneof("what"), DropReason.SPOOL_FULL, str(full))
            return []

    def convert_embedding(self, body: dict[str, Any]) -> list[Record]:
        name = self._names.resolve(body["logdir"], None)
        directory = os.path.join(body["logdir"], body["subdir"])
        step = int(body["step"])
        records = []
        for filename in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
            with open(os.path.join(directory, filename), "rb") as file:
                data = file.read()
            media_type = "image/png" if filename.endswith(".png") else "text/tab-separated-values"
            try:
                blob = self._store.put(data, media_type)
            except PayloadStoreFull as full:  # an embedding is delivered whole or not at all
                self._drop(body["tag"], DropReason.SPOOL_FULL, str(full))
                return []
            records.append(self._record(RecordKind.EMBEDDING, name, body["tag"], step, body["wall_time"],
                                        blob=blob, filename=filename))
        return records

    # -- one event -------------------------------------------------------------------------------------------
    def _records(self, event: Any, name: WriterName) -> Iterator[Record]:
        what = event.WhichOneof("what")
        if what == "summary":
            for value in event.summary.value:
                if value.WhichOneof("value") == "simple_value":  # add_scalar's: the common case, kept short
                    yield Record(RecordKind.SCALAR, name.tag(value.tag), event.step, event.wall_time, name.writer,
                                 value.tag, value.simple_value, rank=self._rank)
                    continue
                try:
                    yield from self._summary_value(value, event, name)
                except PayloadStoreFull as full:
                    self._drop(value.tag, DropReason.SPOOL_FULL, str(full))
                except Exception as error:  # one odd value must not lose the rest of the event
                    self._drop(value.tag, DropReason.unreadable(value.WhichOneof("value")), str(error))
        elif what in ("graph_def", "meta_graph_def"):
            graph = graph_pb2.GraphDef.FromString(getattr(event, what)) if what == "graph_def" else None
            text = text_format.MessageToString(graph) if graph is not None else repr(getattr(event, what))
            yield self._record(RecordKind.GRAPH, name, "graph", event.step, event.wall_time,
                               blob=self._store.put(text.encode(), "text/x-protobuf"), filename="graph.pbtxt")
        elif what == "tagged_run_metadata":
            run = event.tagged_run_metadata
            yield self._record(RecordKind.GRAPH, name, run.tag, event.step, event.wall_time,
                               blob=self._store.put(run.run_metadata, "application/octet-stream"),
                               filename="run_metadata.pb")
        elif what == "session_log" and event.session_log.status == _START and self._options.run_id is not None:
            self._warnings.warning(("restart", name.writer), "tracelet-otel: %s restarts at step %d (purge_step): "
                                   "TensorBoard hides what earlier attempts logged there at that step and above, "
                                   "and the trackers keep what they already have of it (MLflow and W&B every "
                                   "point, ClearML the latest at each step; docs/restarts.md)",
                                   f"writer {name.writer!r}" if name.writer else "the root writer", event.step)
        # file_version, log_message and the other session logs carry no user value.

    def _summary_value(self, value: Any, event: Any, name: WriterName) -> Iterator[Record]:
        kind = value.WhichOneof("value")
        step, wall_time, tag = event.step, event.wall_time, value.tag
        plugin = value.metadata.plugin_data.plugin_name
        if plugin == "hparams":  # metadata-only values: no value oneof is set
            yield from self._hparams(value, name, step, wall_time)
        elif kind == "histo":
            if self._allowed(self._options.capture_histograms, tag, "capture_histograms"):
                yield self._record(RecordKind.HISTOGRAM, name, tag, step, wall_time,
                                   blob=self._json(_histogram(value.histo)))
        elif kind == "image":
            yield from self._image(tag, value.image.encoded_image_string, name, step, wall_time)
        elif kind == "audio":
            yield from self._audio(tag, value.audio.encoded_audio_string, name, step, wall_time)
        elif kind == "tensor":
            yield from self._tensor(value, plugin, name, step, wall_time)
        else:
            self._drop(tag, DropReason.unsupported(str(kind)))

    def _tensor(self, value: Any, plugin: str, name: WriterName, step: int, wall_time: float) -> Iterator[Record]:
        tag = value.tag
        if plugin == "custom_scalars":
            from tensorboard.plugins.custom_scalar import layout_pb2

            layout = layout_pb2.Layout.FromString(value.tensor.string_val[0])
            yield self._record(RecordKind.CUSTOM_SCALARS, name, tag, step, wall_time,
                               blob=self._json(json_format.MessageToDict(layout)))
            return
        # Imported on first use: through TensorBoard's TensorFlow stub it loads boto3 where that is installed,
        # 12 MB of the agent's memory that a run of scalars never needs.
        from tensorboard.util import tensor_util

        array = tensor_util.make_ndarray(value.tensor)
        # TensorFlow 2's summaries (tf.summary.*, Keras) are tensors: images [width, height, png...], audio
        # [[wav, label]...], histograms [[left, right, count]...]; tensor k of several is "<tag>/<k>".
        if plugin == "images":
            images = array[2:]
            for index, data in enumerate(images):
                yield from self._image(_nth(tag, index, len(images)), data, name, step, wall_time, original=tag)
        elif plugin == "audio":
            clips = array.reshape(-1, 2)[:, 0] if array.size else array
            for index, data in enumerate(clips):
                yield from self._audio(_nth(tag, index, len(clips)), data, name, step, wall_time, original=tag)
        elif plugin == "histograms":
            if self._allowed(self._options.capture_histograms, tag, "capture_histograms"):
                yield self._record(RecordKind.HISTOGRAM, name, tag, step, wall_time,
                                   blob=self._json({"buckets": array.reshape(-1, 3).tolist()}))
        elif plugin == "scalars":
            yield self._record(RecordKind.SCALAR, name, tag, step, wall_time, value=float(array.item()))
        elif plugin == "text":
            # torch and tensorboardX write add_text("note") as "note/text_summary"; the user's tag is "note".
            tag = tag.removesuffix("/text_summary")
            yield self._record(RecordKind.TEXT, name, tag, step, wall_time, original=value.tag,
                               blob=self._store.put(_text_bytes(array), "text/plain"))
        elif plugin == "pr_curves":
            rows = ("true_positives", "false_positives", "true_negatives", "false_negatives", "precision", "recall")
            yield self._record(RecordKind.PR_CURVE, name, tag, step, wall_time,
                               blob=self._json({row: array[i].tolist() for i, row in enumerate(rows)}))
        elif plugin == "mesh":
            from tensorboard.plugins.mesh import plugin_data_pb2

            mesh = plugin_data_pb2.MeshPluginData.FromString(value.metadata.plugin_data.content)
            component = _MESH_COMPONENTS.get(mesh.content_type, str(mesh.content_type))
            yield self._record(RecordKind.MESH, name, mesh.name or tag, step, wall_time,
                               blob=self._npy(array), filename=f"{component.lower()}.npy")
        else:
            yield self._record(RecordKind.TENSOR, name, tag, step, wall_time, blob=self._npy(array))

    def _hparams(self, value: Any, name: WriterName, step: int, wall_time: float) -> Iterator[Record]:
        from tensorboard.plugins.hparams import plugin_data_pb2

        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        if data.WhichOneof("data") != "session_start_info":
            return  # the experiment and session-end summaries hold no values of their own
        params: dict[str, ParamValue] = {}
        for key, param in data.session_start_info.hparams.items():
            which = param.WhichOneof("kind")
            params[key] = {"number_value": _number(param.number_value), "string_value": param.string_value,
                           "bool_value": param.bool_value}.get(which, json_format.MessageToJson(param))
        yield self._record(RecordKind.HPARAMS, name, "hparams", step, wall_time, params=params,
                           blob=self._json(params), filename=f"{name.hparams_run or 'hparams'}.json")

    def _audio(self, tag: str, data: bytes, name: WriterName, step: int, wall_time: float,
               original: str | None = None) -> Iterator[Record]:
        if self._allowed(self._options.capture_audio, tag, "capture_audio"):
            yield self._record(RecordKind.AUDIO, name, tag, step, wall_time, original=original,
                               blob=self._store.put(data, "audio/wav"))

    def _image(self, tag: str, data: bytes, name: WriterName, step: int, wall_time: float,
               original: str | None = None) -> Iterator[Record]:
        video = data[:4] == b"GIF8"
        if not self._allowed(self._options.capture_images, tag, "capture_images"):
            return
        limit = self._options.max_image_size
        if limit is not None and len(data) > limit:
            shrunk = None if video else _downscale_png(data, limit)
            if shrunk is None:
                self._drop(tag, DropReason.IMAGE_TOO_LARGE, f"{len(data)} bytes > {limit}")
                return
            self._warnings.warning((tag, "downscaled"), "tracelet-otel: image %r downscaled from %d to %d bytes "
                                   "(max_image_size)", tag, len(data), len(shrunk))
            data = shrunk
        kind = RecordKind.VIDEO if video else RecordKind.IMAGE
        yield self._record(kind, name, tag, step, wall_time, original=original,
                           blob=self._store.put(data, "image/gif" if video else "image/png"))

    # -- helpers ---------------------------------------------------------------------------------------------
    def _record(self, kind: RecordKind, name: WriterName, tag: str, step: int, wall_time: float,
                original: str | None = None, **fields: Any) -> Record:
        return Record(kind=kind, tag=name.tag(tag), step=int(step), wall_time=float(wall_time), writer=name.writer,
                      original_tag=original or tag, rank=self._rank, **fields)

    def _json(self, body: Any) -> Blob:
        return self._store.put(json.dumps(body, allow_nan=True).encode(), "application/json")

    def _npy(self, array: np.ndarray) -> Blob:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return self._store.put(buffer.getvalue(), "application/x-npy")

    def _allowed(self, enabled: bool, tag: str, option: str) -> bool:
        if not enabled:
            self._drop(tag, DropReason.option_off(option), warn=False)
        return enabled

    def _drop(self, tag: str, reason: str, detail: str = "", warn: bool = True) -> None:
        """Count a value we leave out, by reason; warn once per tag and reason."""
        self.dropped[reason] += 1
        if warn:
            self._warnings.warning((tag, reason), "tracelet-otel: %r not delivered: %s%s", tag, reason,
                                   f" ({detail})" if detail else "")


def _histogram(histo: Any) -> dict[str, Any]:
    return {"min": histo.min, "max": histo.max, "num": histo.num, "sum": histo.sum,
            "sum_squares": histo.sum_squares, "bucket_limit": list(histo.bucket_limit), "bucket": list(histo.bucket)}


def _nth(tag: str, index: int, count: int) -> str:
    return tag if count == 1 else f"{tag}/{index}"


def _text_bytes(array: np.ndarray) -> bytes:
    if array.size == 1:  # torch and tensorboardX write one string as a 1-element tensor
        item = array.reshape(()).item()
        return item if isinstance(item, bytes) else str(item).encode()
    rows: Iterable[Any] = array.tolist()
    return json.dumps(rows, default=lambda b: b.decode("utf-8", "replace")).encode()


def _downscale_png(data: bytes, limit: int) -> bytes | None:
    from PIL import Image

    image: Any = Image.open(io.BytesIO(data))
    while image.width > 1 and image.height > 1:
        scale = max(0.5, min(0.95, (limit / len(data)) ** 0.5))
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
        if len(data) <= limit:
            return data
    return None
