"""The capture journal survives a crash mid-write and a full disk: a torn frame is never read as data, a failed
write leaves only whole frames, and a reader is never stuck behind a damaged stretch."""

from __future__ import annotations

import errno
import os

import pytest

from tracelet_otel.capture import journal
from tracelet_otel.capture.journal import (
    FrameType,
    JournalReader,
    JournalWriter,
    encode_event,
    encode_frame,
    encode_json,
)


def test_frames_are_read_back_in_order_as_they_grow(tmp_path):
    path = str(tmp_path / "journal")
    writer = JournalWriter(path)
    reader = JournalReader(path)
    writer.append(encode_json(FrameType.WRITER, {"id": 1}))
    assert [frame.json() for frame in reader.frames()] == [{"id": 1}]
    writer.append(encode_event(1, b"event-bytes"))
    (frame,) = reader.frames()
    assert frame.event() == (1, b"event-bytes")
    assert reader.frames() == []


def test_a_torn_frame_is_left_until_it_is_complete(tmp_path):
    path = str(tmp_path / "journal")
    whole = encode_event(7, b"x" * 100)
    with open(path, "wb") as file:
        file.write(whole[:50])
    reader = JournalReader(path)
    assert reader.frames() == []
    with open(path, "ab") as file:
        file.write(whole[50:])
    assert [frame.event() for frame in reader.frames()] == [(7, b"x" * 100)]


def test_a_corrupt_frame_is_skipped_once_whole_frames_follow_it(tmp_path):
    path = str(tmp_path / "journal")
    good, bad = encode_event(1, b"good"), bytearray(encode_event(1, b"bad!"))
    bad[-1] ^= 0xFF
    with open(path, "wb") as file:
        file.write(good + bytes(bad))
    reader = JournalReader(path)
    assert [frame.event() for frame in reader.frames()] == [(1, b"good")]
    with open(path, "ab") as file:
        file.write(encode_event(1, b"after") + encode_frame(FrameType.END, b"FINISHED"))
    assert [frame.type for frame in reader.frames()] == [FrameType.EVENT, FrameType.END]
    assert reader.damaged_stretches == 1


def test_a_torn_frame_with_frames_written_after_it_is_skipped(tmp_path):
    """What a short write followed by more writes leaves, had it not been taken back."""
    path = str(tmp_path / "journal")
    torn = encode_event(1, b"x" * 1000)[:300]
    with open(path, "wb") as file:
        file.write(encode_event(1, b"before") + torn + encode_event(1, b"after") + encode_frame(FrameType.END, b""))
    reader = JournalReader(path)
    assert [frame.payload[4:] for frame in reader.frames()] == [b"before"]  # the rest may still be on its way
    # Once the writer is done (stop_logging, a dead training process, replay), it is damage.
    assert [frame.type for frame in reader.frames(complete=True)] == [FrameType.EVENT, FrameType.END]
    assert reader.damaged_stretches == 1


def test_a_frame_that_never_completes_is_damage_once_the_journal_is_known_complete(tmp_path):
    path = str(tmp_path / "journal")
    with open(path, "wb") as file:
        file.write(encode_event(1, b"before") + encode_event(1, b"x" * 1000)[:300])
    reader = JournalReader(path)
    assert len(reader.frames()) == 1
    assert reader.frames() == []  # maybe still being written
    assert reader.frames(complete=True) == []
    assert reader.damaged_stretches == 1


def test_a_failed_write_is_taken_back_so_the_journal_holds_whole_frames(tmp_path, monkeypatch):
    path = str(tmp_path / "journal")
    writer = JournalWriter(path)
    writer.append(encode_event(1, b"first"))
    real_write = os.write

    def disk_full_halfway(fd, data):  # as a full disk does: a short write, then an error
        if len(data) > 100:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal.os, "write", disk_full_halfway)
    with pytest.raises(OSError):
        writer.append(encode_event(1, b"lost" * 100))
    monkeypatch.setattr(journal.os, "write", real_write)
    writer.append(encode_event(1, b"third"))
    writer.close()

    reader = JournalReader(path)
    assert [frame.event() for frame in reader.frames(complete=True)] == [(1, b"first"), (1, b"third")]
    assert reader.damaged_stretches == 0
