"""The bridge's spools in PostgreSQL, so that several bridge replicas share them (``tracelet-otel serve --state``).

A collector's ``loadbalancing`` exporter keeps a run on one replica until the replica set changes; then the run's
next records go to another replica, while the first may still hold some, or be gone (scaled down, killed). With
the spools in a database every replica reaches, nothing is stranded on a replica and nothing is told apart by
which replica received it: a record is stored once however many replicas it reaches (the keys that arrived are
rows, claimed in the transaction that stores the record, before the request is acknowledged), the run's end
is there for whichever replica delivers, and so is its tracker run (one, created by whichever delivers first).

One replica at a time delivers a spool: it holds the spool's lease, a row that lasts ``LEASE_S``. A thread of
the process renews all the leases it holds in one statement every ``RENEW_S``, so that a slow open or batch
never lets a lease lapse while the process lives. A replica that dies leaves its leases to expire, and another
takes the run over where the spool says delivery stopped (MLflow stores a batch sent again once; W&B and
ClearML skip what they stored, as after any crash).

The layout mirrors the sqlite spool's (``tracelet_otel.delivery.spool``), row for row, with the spool's name as
the first column of each table. Credentials come from libpq (``PGPASSWORD``, ``~/.pgpass``), never from the
location, which appears in messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from tracelet_otel.delivery.spool import record_of, row_of
from tracelet_otel.records import Record

__all__ = ["LEASE_S", "SCHEME", "PostgresSpool", "orphaned_spools", "spool_names"]

SCHEME = "postgresql://"
LEASE_S = 15.0
RENEW_S = 3.0
_NUMBERED_AFTER = "numbered_after"
CONNECTIONS = 8  # per process and database: appends and deliveries are short transactions
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracelet_spools (
    spool TEXT PRIMARY KEY, last_seq BIGINT NOT NULL DEFAULT 0, delivered_seq BIGINT NOT NULL DEFAULT 0,
    received_through BIGINT NOT NULL DEFAULT 0, received_at DOUBLE PRECISION,
    lease_holder TEXT, lease_until TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS tracelet_records (
    spool TEXT NOT NULL, seq BIGINT NOT NULL, kind TEXT NOT NULL, tag TEXT NOT NULL, step BIGINT NOT NULL,
    wall_time DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION, writer TEXT NOT NULL, extra TEXT,
    PRIMARY KEY (spool, seq)
);
CREATE TABLE IF NOT EXISTS tracelet_received (spool TEXT NOT NULL, key BIGINT NOT NULL, PRIMARY KEY (spool, key));
CREATE TABLE IF NOT EXISTS tracelet_meta (spool TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                                          PRIMARY KEY (spool, key));
"""
_SCHEMA_LOCK = 0x7472_6163_656C_6574  # "tracelet": replicas starting together create the tables once
# Who holds a lease: one process, so that a replica restarted under the same name waits for its old lease.
_HOLDER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _Database:
    """At most ``CONNECTIONS`` connections of this process to one database, each used by one thread at a time."""

    def __init__(self, dsn: str) -> None:
        import psycopg2

        self._connect = lambda: psycopg2.connect(dsn)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(CONNECTIONS)
        self.held: set[str] = set()  # the spools whose lease this process holds, as the last renewal found
        self._renewing: threading.Thread | None = None
        with self.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            cursor.execute(_SCHEMA)

    def take_lease(self, spool: str) -> bool:
        with self.transaction() as cursor:
            cursor.execute("UPDATE tracelet_spools SET lease_holder = %s, lease_until = now() + %s * interval '1 s' "
                           "WHERE spool = %s AND (lease_holder IS NULL OR lease_holder = %s OR lease_until < now()) "
                           "RETURNING 1", (_HOLDER, LEASE_S, spool, _HOLDER))
            taken = cursor.fetchone() is not None
        with self._lock:
            if taken:
                self.held.add(spool)
                if self._renewing is None:
                    self._renewing = threading.Thread(target=self._renew, name="tracelet-otel-leases", daemon=True)
                    self._renewing.start()
            else:
                self.held.discard(spool)
        return taken

    def holds(self, spool: str) -> bool:
        with self._lock:
            return spool in self.held

    def give_back(self, spool: str) -> None:
        with self._lock:
            self.held.discard(spool)
        with self.transaction() as cursor:
            cursor.execute("UPDATE tracelet_spools SET lease_holder = NULL WHERE spool = %s AND lease_holder = %s",
                           (spool, _HOLDER))

    def _renew(self) -> None:
        while True:
            time.sleep(RENEW_S)
            try:
                with self.transaction() as cursor:
                    cursor.execute("UPDATE tracelet_spools SET lease_until = now() + %s * interval '1 s' "
                                   "WHERE lease_holder = %s RETURNING spool", (LEASE_S, _HOLDER))
                    renewed = {row[0] for row in cursor.fetchall()}
            except Exception:  # the database is away for a moment: the leases last LEASE_S, the next try renews
                continue
            with self._lock:
                self.held &= renewed  # a lease missing here was taken over after it expired

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in a transaction, committed when the block ends; rolled back if it raised."""
        with self._slots:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None or connection.closed:
                connection = self._connect()
            try:
                with connection.cursor() as cursor:
                    yield cursor
                connection.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    connection.rollback()
                if connection.closed or _broken(connection):
                    connection.close()
                raise
            finally:
                if not connection.closed:
                    with self._lock:
                        self._idle.append(connection)


def _broken(connection: Any) -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.rollback()
        return False
    except Exception:
        return True


_databases: dict[str, _Database] = {}
_databases_lock = threading.Lock()


def _database(dsn: str) -> _Database:
    with _databases_lock:
        if dsn not in _databases:
            _databases[dsn] = _Database(dsn)
        return _databases[dsn]


def spool_names(dsn: str) -> list[str]:
    """Every spool the database holds, by name."""
    with _database(dsn).transaction() as cursor:
        cursor.execute("SELECT spool FROM tracelet_spools ORDER BY spool")
        return [row[0] for row in cursor.fetchall()]


def orphaned_spools(dsn: str) -> list[str]:
    """The spools no process holds the lease of (given back, or expired) that still wait (records not
    delivered, or a run not ended) and received nothing for a lease's time: a run that is receiving brings its
    records, and a delivery, to its replica itself."""
    from tracelet_otel.delivery.worker import DELIVERY_KEY, FINISHED_KEY

    with _database(dsn).transaction() as cursor:
        cursor.execute("SELECT s.spool FROM tracelet_spools s WHERE (s.lease_holder IS NULL OR s.lease_until < now()) "
                       "AND (s.last_seq > s.delivered_seq OR NOT EXISTS (SELECT 1 FROM tracelet_meta m WHERE "
                       "m.spool = s.spool AND m.key = %s)) AND EXISTS (SELECT 1 FROM tracelet_meta m WHERE "
                       "m.spool = s.spool AND m.key = %s) AND (s.received_at IS NULL OR s.received_at < %s) "
                       "ORDER BY s.spool", (FINISHED_KEY, DELIVERY_KEY, time.time() - LEASE_S))
        return [row[0] for row in cursor.fetchall()]


class Lease:
    """The right to deliver one spool, renewed by the process while it lives; ``close()`` gives it back."""

    def __init__(self, database: _Database, spool: str) -> None:
        self._database = database
        self._spool = spool

    def renew(self) -> bool:
        """Whether the lease is still this process's; a lease that lapsed (this process stalled past it, or lost
        the database for as long) is taken again if no other replica took it meanwhile."""
        return self._database.holds(self._spool) or self._database.take_lease(self._spool)

    def close(self) -> None:
        self._database.give_back(self._spool)


class PostgresSpool:
    """A spool in PostgreSQL; ``location`` is ``postgresql://HOST:PORT/DATABASE#NAME``. The methods are the
    sqlite spool's that the bridge uses, with the same meaning."""

    def __init__(self, location: str) -> None:
        self.path = location
        dsn, _, self.name = location.partition("#")
        self._db = _database(dsn)
        with self._db.transaction() as cursor:
            cursor.execute("INSERT INTO tracelet_spools (spool) VALUES (%s) ON CONFLICT DO NOTHING", (self.name,))

    def try_lock(self) -> Lease | None:
        """The spool's lease, or None while another replica holds it."""
        return Lease(self._db, self.name) if self._db.take_lease(self.name) else None

    def append_new(self, keyed: Iterable[tuple[int, Record]], seen: Iterable[int] = ()) -> int:
        keyed, seen = list(keyed), list(seen)
        with self._db.transaction() as cursor:
            cursor.execute("SELECT last_seq, received_through FROM tracelet_spools WHERE spool = %s FOR UPDATE",
                           (self.name,))
            last_seq, through = cursor.fetchone()
            keys = [key for key, _ in keyed if key > through] + [key for key in seen if key > through]
            cursor.execute("INSERT INTO tracelet_received (spool, key) SELECT %s, unnest(%s::bigint[]) "
                           "ON CONFLICT DO NOTHING RETURNING key", (self.name, keys))
            first = {row[0] for row in cursor.fetchall()}
            rows = []
            for key, record in keyed:
                if key in first:
                    first.discard(key)  # a key twice in one request is stored once
                    last_seq += 1
                    rows.append((self.name, last_seq, *row_of(record)))
            if rows:
                from psycopg2.extras import execute_values

                execute_values(cursor, "INSERT INTO tracelet_records (spool, seq, kind, tag, step, wall_time, value, "
                               "writer, extra) VALUES %s", rows, page_size=1000)
            cursor.execute("SELECT key FROM tracelet_received WHERE spool = %s AND key > %s ORDER BY key LIMIT 100000",
                           (self.name, through))
            for (key,) in cursor.fetchall():
                if key != through + 1:
                    break
                through = key
            cursor.execute("DELETE FROM tracelet_received WHERE spool = %s AND key <= %s", (self.name, through))
            cursor.execute("UPDATE tracelet_spools SET last_seq = %s, received_through = %s, received_at = %s "
                           "WHERE spool = %s", (last_seq, through, time.time(), self.name))
        return len(rows)

    def _column(self, column: str) -> Any:
        with self._db.transaction() as cursor:
            cursor.execute(f"SELECT {column} FROM tracelet_spools WHERE spool = %s", (self.name,))
            return cursor.fetchone()[0]

    def received_through(self) -> int:
        return int(self._column("received_through"))

    def received_at(self) -> float | None:
        """When records last arrived (``time.time()``), from whichever replica."""
        value = self._column("received_at")
        return None if value is None else float(value)

    def delivered_seq(self) -> int:
        return int(self._column("delivered_seq"))

    def pending(self, limit: int) -> list[tuple[int, Record]]:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT r.seq, r.kind, r.tag, r.step, r.wall_time, r.value, r.writer, r.extra "
                           "FROM tracelet_records r JOIN tracelet_spools s ON s.spool = r.spool "
                           "WHERE r.spool = %s AND r.seq > s.delivered_seq ORDER BY r.seq LIMIT %s", (self.name, limit))
            return [(row[0], record_of(row)) for row in cursor.fetchall()]

    def mark_delivered(self, seq: int) -> None:
        with self._db.transaction() as cursor:
            cursor.execute("UPDATE tracelet_spools SET delivered_seq = GREATEST(delivered_seq, %s) WHERE spool = %s",
                           (seq, self.name))
            cursor.execute("DELETE FROM tracelet_records WHERE spool = %s AND seq <= %s", (self.name, seq))

    def count(self, through_seq: int | None = None) -> int:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT COUNT(*) FROM tracelet_records r JOIN tracelet_spools s ON s.spool = r.spool "
                           "WHERE r.spool = %s AND r.seq > s.delivered_seq AND r.seq <= %s",
                           (self.name, through_seq or 2**63 - 1))
            return int(cursor.fetchone()[0])

    def total(self) -> int:
        return int(self._column("last_seq")) - int(self.get_meta(_NUMBERED_AFTER) or 0)

    def get_meta(self, key: str) -> Any:
        with self._db.transaction() as cursor:
            cursor.execute("SELECT value FROM tracelet_meta WHERE spool = %s AND key = %s", (self.name, key))
            row = cursor.fetchone()
        return json.loads(row[0]) if row else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._db.transaction() as cursor:
            cursor.execute("INSERT INTO tracelet_meta (spool, key, value) VALUES (%s, %s, %s) ON CONFLICT (spool, key) "
                           "DO UPDATE SET value = EXCLUDED.value", (self.name, key, json.dumps(value)))

    def number_after(self, seq: int) -> None:
        """As the sqlite spool's: a resumable run's records numbered after what its tracker run stored."""
        with self._db.transaction() as cursor:
            cursor.execute("SELECT delivered_seq FROM tracelet_spools WHERE spool = %s FOR UPDATE", (self.name,))
            shift = seq - cursor.fetchone()[0]
            if shift <= 0:
                return
            # Negated first: a primary key shifted in place would meet the rows not shifted yet.
            cursor.execute("UPDATE tracelet_records SET seq = -(seq + %s) WHERE spool = %s", (shift, self.name))
            cursor.execute("UPDATE tracelet_records SET seq = -seq WHERE spool = %s", (self.name,))
            cursor.execute("UPDATE tracelet_spools SET last_seq = last_seq + %s, delivered_seq = %s WHERE spool = %s",
                           (shift, seq, self.name))
        self.set_meta(_NUMBERED_AFTER, seq)

    def compact(self) -> None:
        """Nothing to do: PostgreSQL's autovacuum gives delivered rows' space back."""

    def close(self) -> None:
        """The connections are the process's, shared by its spools."""
