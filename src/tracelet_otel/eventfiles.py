"""TensorBoard event files, on this machine or behind any fsspec URL: finding them and reading their records.

An event file is what every TensorBoard writer writes (torch, tensorboardX, TensorFlow, Keras, JAX's, C++ ones):
TensorFlow's record format, each record ``<length: u64><masked crc32c of the length: u32><data><masked crc32c of
the data: u32>``, its data one ``Event``. TensorBoard reads a file whose name contains ``tfevents``.

:class:`EventFileReader` reads records from any offset, with every checksum checked (with TensorBoard's own
``masked_crc32c``), and says where each ends, so that a reader can resume exactly after the last record it
handed on. A record whose data fails its checksum is skipped and counted; a length that fails its checksum
leaves no way to find the next record, so the rest of the file is skipped and said so. A record cut short at the
end of the file is a write in progress: it is read once it is whole (``complete=False``), or counted as cut
short (``complete=True``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import Any

from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

__all__ = ["EventFileReader", "event_files", "fingerprint", "holds_values", "is_event_file"]

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_HEADER = _LENGTH.size + _CRC.size
READ_CHUNK_BYTES = 16 * 2**20  # bounds memory when a long file is read
MAX_RECORD_BYTES = 2**31  # far above any event; a longer length is damage


def is_event_file(path: str) -> bool:
    return "tfevents" in path.rsplit("/", 1)[-1]


def event_files(fs: Any, root: str) -> list[str]:
    """Every event file below ``root`` (fsspec paths, without protocol), in the order TensorBoard reads them."""
    return sorted(path for path in fs.find(root) if is_event_file(path))


def fingerprint(fs: Any, path: str) -> str | None:
    """A hash of the file's first record (its writer's file_version event, with its wall time): a file rewritten
    under the same name has another. None while the first record is not whole."""
    with fs.open(path, "rb") as file:
        header = file.read(_HEADER)
        if len(header) < _HEADER:
            return None
        (length,) = _LENGTH.unpack_from(header)
        data = file.read(min(length, MAX_RECORD_BYTES))
    return hashlib.sha256(header + data).hexdigest() if len(data) == length else None


def holds_values(fs: Any, path: str) -> bool:
    """Whether the file holds anything a writer logs: a value, a graph, run metadata (its file_version record
    and restart markers are not)."""
    for _, data in EventFileReader(fs, path).records(complete=False):
        try:
            what = event_pb2.Event.FromString(data).WhichOneof("what")
        except DecodeError:  # a record that passed its checksum but is no Event: not a value
            continue
        if what not in (None, "file_version", "session_log"):
            return True
    return False


class EventFileReader:
    """Reads one event file's records from ``offset`` on.

    Attributes:
        offset: where the next record starts; every record before it was handed on.
        damage: what was skipped, in words, since the reader was made.
        cut_short: whether the file ends inside a record (``records(complete=True)`` only).
    """

    def __init__(self, fs: Any, path: str, offset: int = 0) -> None:
        self._fs = fs
        self.path = path
        self.offset = offset
        self.damage: list[str] = []
        self.cut_short = False
        self._stopped = False

    def records(self, *, complete: bool) -> Iterator[tuple[int, bytes]]:
        """``(end, data)`` of each whole record from ``offset`` to the end of what is written; ``end`` is the
        offset just past it. ``complete``: the writer is done, so a record cut short is damage, not a write."""
        if self._stopped:
            return
        with self._fs.open(self.path, "rb") as file:
            file.seek(self.offset)
            buffer = b""
            while True:
                chunk = file.read(READ_CHUNK_BYTES)
                buffer += chunk
                position = 0
                while True:
                    parsed = self._next(buffer, position)
                    if parsed is None:
                        break
                    position, data = parsed
                    if data is not None:
                        yield self.offset, data
                    if self._stopped:
                        return
                buffer = buffer[position:]
                if not chunk:
                    break
        if buffer and complete:
            self.cut_short = True
            self.damage.append(f"the last {len(buffer)} bytes are a record cut short")

    def _next(self, buffer: bytes, position: int) -> tuple[int, bytes | None] | None:
        """The record at ``position`` of ``buffer``: the position after it and its data (None when it was
        skipped); None when the buffer ends first."""
        if len(buffer) - position < _HEADER:
            return None
        header = buffer[position : position + _LENGTH.size]
        (length,) = _LENGTH.unpack(header)
        (length_crc,) = _CRC.unpack_from(buffer, position + _LENGTH.size)
        if masked_crc32c(header) != length_crc or length > MAX_RECORD_BYTES:
            self.damage.append(f"a record's length fails its checksum at offset {self.offset}; the rest of the file "
                               "is skipped")
            self._stopped = True
            return len(buffer), None
        end = position + _HEADER + length + _CRC.size
        if end > len(buffer):
            return None
        data = buffer[position + _HEADER : position + _HEADER + length]
        (data_crc,) = _CRC.unpack_from(buffer, end - _CRC.size)
        start, self.offset = self.offset, self.offset + (end - position)
        if masked_crc32c(data) != data_crc:
            self.damage.append(f"the record at offset {start} fails its checksum and is skipped")
            return end, None
        return end, data
