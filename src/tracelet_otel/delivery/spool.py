"""A durable, per-backend spool of records: sqlite in WAL mode, one file per backend and run.

Records are on disk before an exporter reports success. Delivery is in order, so "delivered" is one number:
the highest sequence number the backend has accepted. A crash loses nothing, and replay resumes right after
that number. Each thread gets its own connection: WAL lets the sender read while the exporter appends.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from tracelet_otel.records import Blob, Record, RecordKind

__all__ = ["Spool"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, tag TEXT NOT NULL, step INTEGER NOT NULL,
    wall_time REAL NOT NULL, value REAL, writer TEXT NOT NULL, extra TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_DELIVERED = "delivered_seq"


def _row(record: Record) -> tuple[Any, ...]:
    """Columns for what every scalar has; JSON only for the rest (and for NaN, which sqlite stores as NULL)."""
    extra: dict[str, Any] = {}
    value = record.value
    if value is not None and math.isnan(value):
        extra["value"], value = value, None
    if record.original_tag != record.tag:
        extra["original_tag"] = record.original_tag
    if record.blob is not None:
        extra["blob"] = list(record.blob)
    for name in ("filename", "params", "rank"):
        if getattr(record, name) is not None:
            extra[name] = getattr(record, name)
    return (record.kind.value, record.tag, record.step, record.wall_time, value, record.writer,
            json.dumps(extra, allow_nan=True) if extra else None)


def _record(row: tuple[Any, ...]) -> Record:
    _, kind, tag, step, wall_time, value, writer, extra_json = row
    extra = json.loads(extra_json) if extra_json else {}
    blob = extra.get("blob")
    return Record(RecordKind(kind), tag, step, wall_time, writer, extra.get("original_tag", tag),
                  extra.get("value", value), Blob(*blob) if blob else None, extra.get("filename"),
                  extra.get("params"), extra.get("rank"))


class Spool:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        connection = self._db()
        connection.execute("PRAGMA journal_mode=WAL")
        connection.executescript(_SCHEMA)

    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
            self._local.connection = connection
            self._connections.append(connection)
        return connection

    def append(self, records: Iterable[Record]) -> int:
        rows = [_row(record) for record in records]
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO records (kind, tag, step, wall_time, value, writer, extra) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
        return len(rows)

    def pending(self, limit: int) -> list[tuple[int, Record]]:
        rows = self._db().execute("SELECT * FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (self.delivered_seq(), limit)).fetchall()
        return [(row[0], _record(row)) for row in rows]

    def delivered_seq(self) -> int:
        return int(self.get_meta(_DELIVERED) or 0)

    def mark_delivered(self, seq: int) -> None:
        """Everything up to ``seq`` is delivered: its rows go, so the spool holds only what waits."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_DELIVERED, json.dumps(seq)))
        db.execute("DELETE FROM records WHERE seq <= ?", (seq,))
        db.execute("COMMIT")

    def waiting_bytes(self) -> int:
        """Bytes of the pages that hold data. sqlite keeps a file's freed pages for reuse, so the file size is
        a high-water mark; what ``max_spool_size`` bounds is what waits."""
        db = self._db()
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * db.execute("PRAGMA page_size").fetchone()[0])

    def total(self) -> int:
        """Records ever spooled (delivered ones included)."""
        row = self._db().execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

    def count(self, through_seq: int | None = None) -> int:
        """Records not delivered yet (up to ``through_seq`` when given)."""
        row = self._db().execute("SELECT COUNT(*) FROM records WHERE seq > ? AND seq <= ?",
                                 (self.delivered_seq(), through_seq or 2**63 - 1)).fetchone()
        return int(row[0])

    def get_meta(self, key: str) -> Any:
        row = self._db().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        self._db().execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        self._local = threading.local()
