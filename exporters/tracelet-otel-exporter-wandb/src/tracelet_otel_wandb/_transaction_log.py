"""Reading what W&B stored: a run's transaction log (``run-<id>.wandb``).

wandb 0.31 ships no reader of its own (no ``datastore`` module, no history ``.jsonl``). The file is a
LevelDB-style record log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks
(crc32 of type and data, length, type FULL/FIRST/MIDDLE/LAST; the header counts in the first block, and a block
tail too short for a chunk header is zero padding). Each reassembled payload is a
``wandb.proto.wandb_internal_pb2.Record``.

:class:`RunLogWatch` follows a live log (the delivery worker's proof of what reached the disk);
:func:`read_run` reads a run directory back (history rows, config, summary, files), for tests and for anyone
who wants an offline run's data without uploading it.
"""

from __future__ import annotations

import glob
import json
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunContents", "RunLogWatch", "TransactionLog", "read_run", "run_directories"]

_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_IDENT, _MAGIC = b":W&B", 0xBEE1
BLOCK_SIZE = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = [zlib.crc32(bytes([chunk_type])) for chunk_type in range(LAST + 1)]


class TransactionLog:
    """Reads the complete records of a ``.wandb`` file, and on each later call those appended since.

    A chunk is consumed only once it is whole and its checksum matches, so a file being written (or cut short by
    a crash) is read up to its last complete record and no further.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._offset = 0  # the next chunk to read; 0 until the file header was checked
        self._parts: list[bytes] = []  # chunks of a record not complete yet

    def new_payloads(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as file:
                if self._offset == 0:
                    header = file.read(_FILE_HEADER.size)
                    if len(header) < _FILE_HEADER.size:
                        return []
                    ident, magic, _ = _FILE_HEADER.unpack(header)
                    if (ident, magic) != (_IDENT, _MAGIC):
                        raise ValueError(f"{self.path} is not a W&B transaction log")
                    self._offset = _FILE_HEADER.size
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        return self._chunks(data)

    def _chunks(self, data: bytes) -> list[bytes]:
        payloads = []
        position = 0  # in data, which starts at self._offset
        while True:
            offset = self._offset + position
            room = BLOCK_SIZE - offset % BLOCK_SIZE
            if room < _CHUNK_HEADER.size:  # the writer pads the block tail with zeros
                if position + room > len(data):
                    break
                position += room
                continue
            end = position + _CHUNK_HEADER.size
            if end > len(data):
                break
            checksum, length, chunk_type = _CHUNK_HEADER.unpack(data[position:end])
            chunk = data[end : end + length]
            if (chunk_type not in (FULL, FIRST, MIDDLE, LAST) or len(chunk) < length
                    or zlib.crc32(chunk, _TYPE_CRC[chunk_type]) != checksum):
                break  # not written yet (or torn by a crash): stop before it
            position = end + length
            if chunk_type == FULL:
                payloads.append(chunk)
            elif chunk_type == FIRST:
                self._parts = [chunk]
            else:
                self._parts.append(chunk)
                if chunk_type == LAST:
                    payloads.append(b"".join(self._parts))
                    self._parts = []
        self._offset += position
        return payloads


class RunLogWatch:
    """Follows a live transaction log: the highest number one summary key has been given, and whether the run
    has ended (W&B wrote its exit record)."""

    def __init__(self, path: str, key: str) -> None:
        self._log = TransactionLog(path)
        self._key = key
        self._needle = key.encode()
        self.highest = 0
        self.ended = False

    def poll(self, every_record: bool = False) -> None:
        """Read what was appended since the last call. Only records that mention the key are parsed (parsing
        every history record would cost more than W&B writing it) unless ``every_record``: the exit record is
        seen only then."""
        from wandb.proto.wandb_internal_pb2 import Record  # type: ignore[attr-defined]  # a * re-export

        for payload in self._log.new_payloads():
            if not every_record and self._needle not in payload:
                continue
            record = Record.FromString(payload)
            if record.WhichOneof("record_type") == "exit":
                self.ended = True
            for item in record.summary.update:
                if _item_key(item) == [self._key]:
                    self.highest = max(self.highest, int(json.loads(item.value_json)))


def run_directories(wandb_dir: str, run_id: str) -> list[str]:
    """The directories W&B wrote for one run id under a ``wandb`` directory, oldest first: the first one, and
    one more each time the run was resumed (``[offline-]run-<time>-<id>``, plus ``-<n>`` when W&B made a second
    one within the same second)."""
    pattern = re.compile(rf"(?:offline-)?run-(\d{{8}}_\d{{6}})-{re.escape(run_id)}(?:-(\d+))?")
    found = []
    for name in os.listdir(wandb_dir) if os.path.isdir(wandb_dir) else []:
        match = pattern.fullmatch(name)
        if match and os.path.isdir(os.path.join(wandb_dir, name)):
            found.append(((match.group(1), int(match.group(2) or 0)), os.path.join(wandb_dir, name)))
    return [path for _, path in sorted(found)]


@dataclass
class RunContents:
    """One run directory read back. Values are as W&B stored them (JSON-decoded): a media value is its JSON
    description (``{"_type": "image-file", "path": "media/images/...", ...}``), its file under ``files_dir``."""

    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # saved files, relative to files_dir
    environment: dict[str, Any] = field(default_factory=dict)  # program, args, host, username, git, ...
    stats: list[dict[str, Any]] = field(default_factory=list)  # system metrics samples
    console: list[tuple[str, str, float]] = field(default_factory=list)  # (stdout|stderr, text, wall time)
    run: dict[str, Any] = field(default_factory=dict)  # run id, project, display name, host, git, ...
    exit_code: int | None = None
    files_dir: str = ""


def read_run(run_directory: str) -> RunContents:
    """Everything a run directory's ``.wandb`` file holds that tracelet-otel writes."""
    from google.protobuf.json_format import MessageToDict
    from wandb.proto.wandb_internal_pb2 import Record  # type: ignore[attr-defined]  # a * re-export

    (path,) = glob.glob(os.path.join(glob.escape(run_directory), "run-*.wandb"))
    contents = RunContents(files_dir=os.path.join(run_directory, "files"))
    for payload in TransactionLog(path).new_payloads():
        record = Record.FromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, _item_key(item), json.loads(item.value_json))
            contents.history.append(row)
        elif kind == "run":
            contents.run = MessageToDict(record.run, preserving_proto_field_name=True)
            _update(contents.config, record.run.config)
        elif kind == "config":
            _update(contents.config, record.config)
        elif kind == "summary":
            _update(contents.summary, record.summary)
        elif kind == "files":
            contents.files.extend(item.path for item in record.files.files)
        elif kind == "environment":
            contents.environment.update(MessageToDict(record.environment, preserving_proto_field_name=True))
        elif kind == "stats":
            contents.stats.append({item.key: json.loads(item.value_json) for item in record.stats.item})
        elif kind == "output_raw":
            stream = "stderr" if record.output_raw.output_type == record.output_raw.OutputType.STDERR else "stdout"
            contents.console.append((stream, record.output_raw.line, record.output_raw.timestamp.ToNanoseconds() / 1e9))
        elif kind == "exit":
            contents.exit_code = record.exit.exit_code
    return contents


def _item_key(item: Any) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _put(target: dict[str, Any], key: list[str], value: Any) -> None:
    for part in key[:-1]:
        target = target.setdefault(part, {})
    target[key[-1]] = value


def _update(target: dict[str, Any], changes: Any) -> None:
    for item in changes.update:
        _put(target, _item_key(item), json.loads(item.value_json))
    for item in changes.remove:
        key = _item_key(item)
        parent = target
        for part in key[:-1]:
            parent = parent.get(part, {})
        parent.pop(key[-1], None)
