"""The capture journal survives a crash mid-write: a torn last frame is never read as data."""

from __future__ import annotations

from tracelet_otel.capture.journal import FrameType, JournalReader, JournalWriter, encode_event, encode_json


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


def test_a_corrupt_frame_ends_the_journal(tmp_path):
    path = str(tmp_path / "journal")
    good, bad = encode_event(1, b"good"), bytearray(encode_event(1, b"bad!"))
    bad[-1] ^= 0xFF
    with open(path, "wb") as file:
        file.write(good + bytes(bad))
    assert [frame.event() for frame in JournalReader(path).frames()] == [(1, b"good")]
