"""A durable, per-backend spool of records: sqlite in WAL mode, one file per backend and run.

Records are on disk before an exporter reports success. A record is marked delivered only after its backend
accepted it, so a crash loses nothing and replay resumes where delivery stopped.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import Any, Iterable

from tracelet_otel.records import Record

__all__ = ["Spool"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Spool:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.executescript(_SCHEMA)

    def append(self, records: Iterable[Record]) -> int:
        rows = [(record.to_json(),) for record in records]
        with self._lock:
            self._db.executemany("INSERT INTO records (body) VALUES (?)", rows)
        return len(rows)

    def pending(self, limit: int) -> list[tuple[int, Record]]:
        with self._lock:
            rows = self._db.execute("SELECT seq, body FROM records ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [(seq, Record.from_json(body)) for seq, body in rows]

    def mark_delivered(self, seqs: Iterable[int]) -> None:
        # Delivered records are deleted: the spool holds exactly what is still owed.
        with self._lock:
            self._db.executemany("DELETE FROM records WHERE seq = ?", [(seq,) for seq in seqs])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def get_meta(self, key: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def close(self) -> None:
        with self._lock:
            self._db.close()
