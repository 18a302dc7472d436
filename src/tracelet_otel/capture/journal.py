"""The capture journal: an append-only file that carries captured events out of the training process.

The training process only appends frames; the agent process tails the file and does everything else. A frame
is ``<length:u32><crc32:u32><type:u8><payload>``; a torn last frame (a crash mid-write) fails its CRC or length
and is treated as the end of the journal.
"""

from __future__ import annotations

import contextlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

__all__ = ["Frame", "FrameType", "JournalReader", "JournalWriter"]

_HEADER = struct.Struct("<IIB")
_WRITER_ID = struct.Struct("<I")
READ_CHUNK_BYTES = 16 * 2**20  # bounds the agent's memory when a long journal is replayed


class FrameType:
    WRITER = 1  # JSON: a writer's identity, sent once before its first event
    EVENT = 2  # u32 writer id + the serialized tensorboard Event, exactly as the writer emitted it
    EMBEDDING = 3  # JSON: an add_embedding call (it writes files, not events)
    END = 4  # stop_logging was called: nothing follows


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    payload: bytes
    end: int  # journal offset just past this frame

    def json(self) -> Any:
        return json.loads(self.payload)

    def event(self) -> tuple[int, bytes]:
        (writer_id,) = _WRITER_ID.unpack_from(self.payload)
        return writer_id, self.payload[_WRITER_ID.size :]


def encode_frame(frame_type: int, payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload), frame_type) + payload


def is_event(chunk: bytes) -> bool:
    """Whether an encoded frame is an event (the type byte follows length and CRC)."""
    return chunk[_HEADER.size - 1] == FrameType.EVENT


def encode_json(frame_type: int, body: Any) -> bytes:
    return encode_frame(frame_type, json.dumps(body, separators=(",", ":")).encode())


def encode_event(writer_id: int, event_bytes: bytes) -> bytes:
    return encode_frame(FrameType.EVENT, _WRITER_ID.pack(writer_id) + event_bytes)


class JournalWriter:
    def __init__(self, path: str) -> None:
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115 - closed by close()

    def append(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._file.flush()

    def reopen(self) -> None:
        """After a failed write: a fresh file object, so nothing left in the old one's buffer is written."""
        path = self._file.name
        with contextlib.suppress(OSError):
            self._file.close()
        self._file = open(path, "ab")  # noqa: SIM115 - closed by close()

    def close(self) -> None:
        self._file.close()


class JournalReader:
    """Reads complete frames from a journal that may still be growing."""

    def __init__(self, path: str, offset: int = 0) -> None:
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.offset = offset
        self._buffer = b""

    def frames(self) -> list[Frame]:
        """Every complete frame written since the last call; stops at the end of what is on disk."""
        self._file.seek(self.offset + len(self._buffer))
        data = self._buffer + self._file.read(READ_CHUNK_BYTES)
        frames, position = [], 0
        while len(data) - position >= _HEADER.size:
            length, crc, frame_type = _HEADER.unpack_from(data, position)
            end = position + _HEADER.size + length
            if end > len(data):
                break
            payload = data[position + _HEADER.size : end]
            if zlib.crc32(payload) != crc:
                break
            frames.append(Frame(frame_type, payload, self.offset + end))
            position = end
        self.offset += position
        self._buffer = data[position:]
        return frames

    def close(self) -> None:
        self._file.close()
