"""The capture journal: an append-only file that carries captured events out of the training process.

The training process only appends frames; the agent process tails the file and does everything else. A frame
is ``<length:u32><crc32:u32><type:u8><payload>``. A write that fails (a full disk) is taken back out of the file,
so the journal holds whole frames only; a torn last frame (a crash mid-write) fails its CRC or length and is
where reading stops; anything damaged with whole frames after it is skipped.

A journal would grow with everything a run ever logs. Its start, once converted into every spool, is given back
to the file system in place (:class:`ReleasedStart`): a hole punched into the file, so offsets, and the appends
of the training process and its forked children, stay as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import struct
import sys
import zlib
from collections.abc import Mapping
from typing import Any, BinaryIO, NamedTuple

__all__ = ["Frame", "FrameType", "JournalReader", "JournalWriter", "ReleasedStart"]

_HEADER = struct.Struct("<IIB")
_WRITER_ID = struct.Struct("<I")
_CONSOLE = struct.Struct("<Bd")
READ_CHUNK_BYTES = 16 * 2**20  # bounds the agent's memory when a long journal is replayed
MAX_FRAME_BYTES = 2**30  # far above any TensorBoard event; a longer length is damage


class FrameType:
    WRITER = 1  # JSON: a writer's identity, sent once before its first event
    EVENT = 2  # u32 writer id + the serialized tensorboard Event, exactly as the writer emitted it
    EMBEDDING = 3  # JSON: an add_embedding call (it writes files, not events)
    END = 4  # stop_logging was called: nothing follows; the payload is the status the runs end with
    DROPPED = 5  # JSON: values a forked child could not capture, {"reason", "count"}
    CONSOLE = 6  # u8 stream (1 stdout, 2 stderr) + f64 wall time + the bytes written to it, as they came


_FRAME_TYPES = frozenset({FrameType.WRITER, FrameType.EVENT, FrameType.EMBEDDING, FrameType.END, FrameType.DROPPED,
                          FrameType.CONSOLE})


class Frame(NamedTuple):  # not a frozen dataclass: the agent builds one per captured event, ~0.5 us cheaper each
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
    """Whether an encoded frame holds values (an event, console output): what ``max_spool_size`` may drop
    (the type byte follows length and CRC)."""
    return chunk[_HEADER.size - 1] in (FrameType.EVENT, FrameType.CONSOLE)


def encode_json(frame_type: int, body: Any) -> bytes:
    return encode_frame(frame_type, json.dumps(body, separators=(",", ":")).encode())


def encode_event(writer_id: int, event_bytes: bytes) -> bytes:
    return encode_frame(FrameType.EVENT, _WRITER_ID.pack(writer_id) + event_bytes)


def encode_console(fd: int, wall_time: float, data: bytes) -> bytes:
    return encode_frame(FrameType.CONSOLE, _CONSOLE.pack(fd, wall_time) + data)


def decode_console(payload: bytes) -> tuple[int, float, bytes]:
    """(fd, wall time, bytes) of a console frame."""
    fd, wall_time = _CONSOLE.unpack_from(payload)
    return fd, wall_time, payload[_CONSOLE.size :]


class JournalWriter:
    """Appends whole chunks of frames; a chunk that cannot be written whole is taken back out of the file."""

    def __init__(self, path: str) -> None:
        # O_APPEND: forked children append to the same journal; each chunk is one write, so frames never mix.
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, chunk: bytes) -> None:
        """Write ``chunk`` whole, or raise OSError and leave the file as it was (a full disk: a short write)."""
        written = 0
        try:
            while written < len(chunk):
                written += os.write(self._fd, memoryview(chunk)[written:])
        except OSError:
            if written:  # readers skip what could not be taken back
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, os.lseek(self._fd, 0, os.SEEK_CUR) - written)
            raise

    def allocated_bytes(self) -> int:
        """The disk the journal takes: what is not released yet (:class:`ReleasedStart`)."""
        return os.fstat(self._fd).st_blocks * 512

    def close(self) -> None:
        os.close(self._fd)


class JournalReader:
    """Reads complete frames from a journal that may still be growing.

    A damaged stretch (a torn write that could not be taken back, a corrupted disk block) is skipped: reading
    resumes at the next whole frame, and ``damaged_stretches`` counts what was skipped. A frame that looks
    like a write still in progress is waited for until the journal is known complete.
    """

    def __init__(self, path: str, offset: int = 0) -> None:
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.offset = offset
        self._buffer = b""
        self.damaged_stretches = 0

    def frames(self, *, complete: bool = False) -> list[Frame]:
        """Every whole frame written since the last call, up to the end of what is on disk.

        With ``complete`` the writer is known to be done: a frame that claims more bytes than the journal has
        is damage, not a write in progress.
        """
        self._file.seek(self.offset + len(self._buffer))
        data = self._buffer + self._file.read(READ_CHUNK_BYTES)
        frames, position = [], 0
        while len(data) - position >= _HEADER.size:
            length, crc, frame_type = _HEADER.unpack_from(data, position)
            end = position + _HEADER.size + length
            whole = frame_type in _FRAME_TYPES and length <= MAX_FRAME_BYTES and end <= len(data)
            if whole and zlib.crc32(data[position + _HEADER.size : end]) == crc:
                frames.append(Frame(frame_type, data[position + _HEADER.size : end], self.offset + end))
                position = end
                continue
            in_progress = frame_type in _FRAME_TYPES and length <= MAX_FRAME_BYTES and end > len(data)
            if in_progress and not complete:
                break
            following = _next_whole_frame(data, position + 1)
            if following is None and not complete:
                break  # maybe damage, maybe not: decide once more of the journal is there
            self.damaged_stretches += 1
            position = len(data) if following is None else following
        self.offset += position
        self._buffer = data[position:]
        return frames

    def close(self) -> None:
        self._file.close()


def _next_whole_frame(data: bytes, start: int) -> int | None:
    """Where the next frame that is whole and passes its CRC starts, at or after ``start``."""
    for position in range(start, len(data) - _HEADER.size + 1):
        length, crc, frame_type = _HEADER.unpack_from(data, position)
        end = position + _HEADER.size + length
        if frame_type in _FRAME_TYPES and end <= len(data) and zlib.crc32(data[position + _HEADER.size : end]) == crc:
            return position
    return None


class ReleasedStart:
    """The start of a journal that every spool holds already, given back to the file system.

    What later frames still need from it is kept beside the journal in ``<journal>.released`` (JSON), written
    before the bytes are freed: where the whole frames begin now (``start``, a frame boundary), the writers the
    freed frames announced, and the values they counted as dropped. A reader, after a crash too, registers
    those writers and reads from ``start``.

    Freeing needs a file system that can punch holes (Linux: ext4, xfs, btrfs, tmpfs, NFS 4.2, ...); where it
    cannot, :meth:`release` says so once with ``False`` and the journal keeps everything until the run ends.
    """

    def __init__(self, journal_path: str) -> None:
        self._journal_path = journal_path
        self.path = journal_path + ".released"
        self.start = 0
        self.writers: dict[int, dict[str, Any]] = {}
        self.dropped: dict[str, int] = {}
        self._freed = 0  # bytes from 0 known to be a hole already
        with contextlib.suppress(FileNotFoundError):
            with open(self.path) as file:
                body = json.load(file)
            self.start, self.dropped = body["start"], body["dropped"]
            self.writers = {int(writer_id): writer for writer_id, writer in body["writers"].items()}

    def release(self, start: int, writers: Mapping[int, dict[str, Any]], dropped: Mapping[str, int]) -> bool:
        """Free the journal before ``start`` (a frame boundary), whose frames announced ``writers`` and counted
        ``dropped``; False if the file system cannot free part of a file.

        Raises:
            OSError: the state could not be written (nothing is freed then).
        """
        partial = f"{self.path}.partial"
        with open(partial, "w") as file:
            json.dump({"start": start, "writers": writers, "dropped": dict(dropped)}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, self.path)
        self.start, self.writers, self.dropped = start, dict(writers), dict(dropped)
        end = start - start % _PAGE
        if end <= self._freed:
            return True
        descriptor = os.open(self._journal_path, os.O_WRONLY)
        try:
            _punch_hole(descriptor, self._freed, end - self._freed)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return False
            raise
        finally:
            os.close(descriptor)
        self._freed = end
        return True

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


_PAGE = 4096  # freed in whole blocks: a partial block would only be zeroed, still taking disk
_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


def _fallocate() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    function = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        function.restype = ctypes.c_int
    return function


_FALLOCATE = _fallocate()


def _punch_hole(descriptor: int, offset: int, length: int) -> None:
    if _FALLOCATE is None:
        raise OSError(errno.EOPNOTSUPP, "this system cannot punch holes into files")
    if _FALLOCATE(descriptor, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
