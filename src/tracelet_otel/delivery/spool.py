"""A durable, per-backend spool of records: sqlite in WAL mode, one file per backend and run.

Records are on disk before an exporter reports success. Delivery is in order, so "delivered" is one number:
the highest sequence number the backend has accepted. A crash loses nothing, and replay resumes right after
that number. Each thread gets its own connection: WAL lets the sender read while the exporter appends.

A row holds a record as its span event does (``telemetry.events``): what every scalar has in columns, the
other attributes as JSON. ``PRAGMA user_version`` names that layout, so a spool of another layout is refused
rather than misread.

Records read from a source (the capture journal, an event file) are appended with the source's position after
them, in the same transaction (``append(records, position)``), and the spool keeps each source's position:
records of a position it has passed are not appended again, so a reader killed at any moment resumes from the
spool's own positions and neither loses nor doubles a record.

Records that arrive with a key (the bridge: the sequence number the job's spool gave each record) are stored
once however often they arrive (``append_new``). Keys are dense, so the spool remembers them as a watermark,
every key up to it received, plus the keys received above it: a few numbers while records arrive in order.

One process delivers a spool at a time: the one holding its lock (``try_lock``). Bridge replicas keep their
spools in PostgreSQL instead (``tracelet_otel.delivery.postgres``), with the same methods: ``open_spool`` opens
either from its location.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections.abc import Iterable
from typing import IO, Any, Protocol

from tracelet_otel._child import try_lock
from tracelet_otel.errors import TraceletError
from tracelet_otel.layout import spool_lock_path
from tracelet_otel.records import Record, RecordKind, SourcePosition
from tracelet_otel.telemetry import events, semconv

__all__ = ["DeliverySpool", "Lease", "Spool", "open_spool", "record_of", "row_of"]

# The payload hash of a row (semconv.BLOB_SHA256 in its extra), as the index and its query both spell it. The
# extra of a NaN scalar is not strict JSON, which json_extract refuses, so it is tested first.
_BLOB_SHA256 = """(CASE WHEN json_valid(extra) THEN json_extract(extra, '$."tracelet.blob.sha256"') END)"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, tag TEXT NOT NULL, step INTEGER NOT NULL,
    wall_time REAL NOT NULL, value REAL, writer TEXT NOT NULL, extra TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- For holds_blob: which payloads the waiting records reference (scalars have no extra, so no index entry).
CREATE INDEX IF NOT EXISTS records_blob ON records ({_BLOB_SHA256}) WHERE extra IS NOT NULL;
CREATE TABLE IF NOT EXISTS received (key INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS positions (source TEXT PRIMARY KEY, offset INTEGER NOT NULL, fingerprint TEXT NOT NULL);
"""
_DELIVERED = "delivered_seq"
_RECEIVED_THROUGH = "received_through"
_NUMBERED_AFTER = "numbered_after"
_KINDS = {kind.value: kind for kind in RecordKind}
WAL_SIZE_LIMIT_BYTES = 4 * 2**20
FORMAT = 2  # 1: releases before 0.2.0, whose extra column had names of its own
_INSERT = "INSERT INTO records (kind, tag, step, wall_time, value, writer, extra) VALUES (?, ?, ?, ?, ?, ?, ?)"


def row_of(record: Record) -> tuple[Any, ...]:
    extra = events.optional_attributes(record)
    value = record.value
    if value is not None and math.isnan(value):  # sqlite would store it as NULL
        extra[semconv.VALUE], value = value, None
    return (record.kind.value, record.tag, record.step, record.wall_time, value, record.writer,
            json.dumps(extra, allow_nan=True) if extra else None)


def record_of(row: tuple[Any, ...]) -> Record:
    _, kind, tag, step, wall_time, value, writer, extra = row
    if extra is None:  # what most rows are, a scalar: the columns are all its attributes (a third of the cost)
        return Record(_KINDS[kind], tag, step, wall_time, writer, tag, value)
    attributes = {semconv.TAG: tag, semconv.STEP: step, semconv.WALL_TIME: wall_time, semconv.WRITER: writer}
    if value is not None:
        attributes[semconv.VALUE] = value
    if extra:
        attributes.update(json.loads(extra))
    record = events.decode(events.event_name(RecordKind(kind)), attributes)
    assert record is not None
    return record


class Lease(Protocol):
    """The right to deliver a spool, until ``close()``."""

    def renew(self) -> bool:
        """Keep it; False if it was lost (another process took it over)."""

    def close(self) -> None: ...


class DeliverySpool(Protocol):
    """What delivery and the bridge use of a spool, in sqlite (:class:`Spool`) or in PostgreSQL."""

    path: str

    def try_lock(self) -> Lease | None: ...
    def append_new(self, keyed: Iterable[tuple[int, Record]], seen: Iterable[int] = ()) -> int: ...
    def received_through(self) -> int: ...
    def pending(self, limit: int) -> list[tuple[int, Record]]: ...
    def delivered_seq(self) -> int: ...
    def mark_delivered(self, seq: int) -> None: ...
    def number_after(self, seq: int) -> None: ...
    def total(self) -> int: ...
    def count(self, through_seq: int | None = None) -> int: ...
    def get_meta(self, key: str) -> Any: ...
    def set_meta(self, key: str, value: Any) -> None: ...
    def compact(self) -> None: ...
    def close(self) -> None: ...


def open_spool(location: str) -> DeliverySpool:
    """The spool at ``location``: a sqlite file's path, or ``postgresql://HOST:PORT/DATABASE#NAME``."""
    from tracelet_otel.delivery import postgres

    if location.startswith(postgres.SCHEME):
        return postgres.PostgresSpool(location)
    return Spool(location)


class _FileLease:
    """The lock file of a spool; nobody can take it over while this process lives."""

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def renew(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()


class Spool:
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        connection = self._db()
        connection.execute("PRAGMA journal_mode=WAL")
        # sqlite reuses its write-ahead log after each checkpoint (every ~4 MB); this gives back what a long
        # read made it grow past that, so a spool's disk stays what waits plus a few MB however long it runs.
        connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES}")
        (layout,) = connection.execute("PRAGMA user_version").fetchone()
        if layout == 0 and connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone():
            layout = 1
        if layout not in (0, FORMAT):
            raise TraceletError(f"{path} was written by another release of tracelet-otel (spool format {layout}, "
                                f"this one reads {FORMAT}); deliver it with that release")
        connection.executescript(_SCHEMA)
        connection.execute(f"PRAGMA user_version = {FORMAT}")

    def _db(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
            self._local.connection = connection
            self._connections.append(connection)
        return connection

    def try_lock(self) -> Lease | None:
        """The spool's lock, or None while another process holds it."""
        file = try_lock(spool_lock_path(self.path))
        return None if file is None else _FileLease(file)

    def append(self, records: Iterable[Record], position: SourcePosition | None = None) -> int:
        """Append ``records``; returns how many were appended.

        With ``position``, the records are what its source holds up to ``position.offset``, and the position is
        recorded in the same transaction. Records of a position the spool has reached already are not appended
        again (0 is returned): a reader that resumes from an earlier position sends them a second time.
        """
        rows = [row_of(record) for record in records]
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            if position is not None:
                reached = db.execute("SELECT offset FROM positions WHERE source = ?", (position.source,)).fetchone()
                if reached is not None and reached[0] >= position.offset:
                    rows = []
                else:
                    db.execute("INSERT OR REPLACE INTO positions (source, offset, fingerprint) VALUES (?, ?, ?)",
                               position)
            db.executemany(_INSERT, rows)
            db.execute("COMMIT")
        except BaseException:  # a full disk: left open, the transaction would lock every other writer out
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def positions(self) -> dict[str, SourcePosition]:
        """How far each source has been read into the spool."""
        rows = self._db().execute("SELECT source, offset, fingerprint FROM positions").fetchall()
        return {row[0]: SourcePosition(*row) for row in rows}

    def append_new(self, keyed: Iterable[tuple[int, Record]], seen: Iterable[int] = ()) -> int:
        """Append each record whose key (a positive integer) never arrived before; ``seen`` are keys that
        arrived without a record to keep (refused ones), so that the watermark passes them. Returns how many
        records were appended."""
        keyed, seen = list(keyed), list(seen)
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            through = self._received_through(db)
            # One look at the keys received above the watermark (a few while records arrive in order), rather
            # than a statement per record.
            keys = [key for key, _ in keyed if key > through] + [key for key in seen if key > through]
            arrived = self._received_between(db, min(keys), max(keys)) if keys else set()
            new_keys = [key for key in dict.fromkeys(keys) if key not in arrived]
            rows = []
            for key, record in keyed:
                if key > through and key not in arrived:
                    arrived.add(key)  # a key twice in one request is kept once
                    rows.append(row_of(record))
            db.executemany("INSERT INTO received (key) VALUES (?)", [(key,) for key in new_keys])
            db.executemany(_INSERT, rows)
            self._advance_received(db, through)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(rows)

    def received_through(self) -> int:
        """Every key up to this one has arrived."""
        return self._received_through(self._db())

    @staticmethod
    def _received_through(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (_RECEIVED_THROUGH,)).fetchone()
        return int(json.loads(row[0])) if row else 0

    @staticmethod
    def _received_between(db: sqlite3.Connection, lowest: int, highest: int) -> set[int]:
        """The keys above the watermark received so far, from ``lowest`` to ``highest``."""
        return {key for (key,) in db.execute("SELECT key FROM received WHERE key BETWEEN ? AND ?", (lowest, highest))}

    @staticmethod
    def _advance_received(db: sqlite3.Connection, through: int) -> None:
        """Fold the keys that continue the watermark into it."""
        (smallest,) = db.execute("SELECT MIN(key) FROM received").fetchone()
        if smallest != through + 1:
            return
        # The end of the run of consecutive keys that starts at the smallest: the first key without a successor.
        (through,) = db.execute("SELECT MIN(key) FROM received AS r WHERE NOT EXISTS "
                                "(SELECT 1 FROM received WHERE key = r.key + 1)").fetchone()
        db.execute("DELETE FROM received WHERE key <= ?", (through,))
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_RECEIVED_THROUGH, json.dumps(through)))

    def pending(self, limit: int) -> list[tuple[int, Record]]:
        rows = self._db().execute("SELECT * FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (self.delivered_seq(), limit)).fetchall()
        return [(row[0], record_of(row)) for row in rows]

    def holds_blob(self, sha256: str) -> bool:
        """Whether a record waiting for delivery references the payload with this hash."""
        row = self._db().execute(f"SELECT 1 FROM records WHERE extra IS NOT NULL AND {_BLOB_SHA256} = ? LIMIT 1",
                                 (sha256,)).fetchone()
        return row is not None

    def delivered_seq(self) -> int:
        return int(self.get_meta(_DELIVERED) or 0)

    def mark_delivered(self, seq: int) -> None:
        """Everything up to ``seq`` is delivered: its rows go, so the spool holds only what waits."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_DELIVERED, json.dumps(seq)))
        db.execute("DELETE FROM records WHERE seq <= ?", (seq,))
        db.execute("COMMIT")

    def number_after(self, seq: int) -> None:
        """Number this spool's records after ``seq``: a restarted job's new spool continues a backend run that
        stored records through ``seq`` from another spool. Records already here are renumbered."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            shift = seq - self.delivered_seq()
            if shift > 0:
                # Negated first: a primary key shifted in place would meet the rows not shifted yet.
                db.execute("UPDATE records SET seq = -(seq + ?)", (shift,))
                db.execute("UPDATE records SET seq = -seq")
                (last,) = db.execute("SELECT MAX(seq) FROM records").fetchone()
                db.execute("DELETE FROM sqlite_sequence WHERE name = 'records'")
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (last or seq,))
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_DELIVERED, json.dumps(seq)))
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (_NUMBERED_AFTER, json.dumps(seq)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def waiting_bytes(self) -> int:
        """Bytes of the pages that hold data. sqlite keeps a file's freed pages for reuse, so the file size is
        a high-water mark; what ``max_spool_size`` bounds is what waits."""
        db = self._db()
        pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * db.execute("PRAGMA page_size").fetchone()[0])

    def total(self) -> int:
        """Records ever spooled (delivered ones included)."""
        row = self._db().execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) - int(self.get_meta(_NUMBERED_AFTER) or 0) if row else 0

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

    def compact(self) -> None:
        """Give the pages of delivered records back to the file system; sqlite keeps them for reuse otherwise. A
        spool whose run is over keeps only what it must remember (which keys arrived): ~60 kB on disk instead
        of ~130 bytes per record it ever held."""
        db = self._db()
        if db.execute("PRAGMA freelist_count").fetchone()[0]:  # else compact already (a bridge restarting)
            db.execute("VACUUM")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        for connection in self._connections:
            connection.close()
        self._connections.clear()
        self._local = threading.local()
