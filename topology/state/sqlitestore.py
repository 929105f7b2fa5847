"""The `sqlite` state provider: one SQLite database per topology under `local.dir`/state.

Every task of the topology on this host writes to the same database, in WAL mode (readers
never wait; writers take turns, waiting up to BUSY_TIMEOUT_MS). Task writes are committed
with synchronous=NORMAL, which survives the death of the process; the commit record with
synchronous=FULL, which makes it and every write before it survive a power loss too. As the
WAL is one sequence, what survives is always a prefix of the protocol's writes, so the
prepared sets a record names are never lost while the record stands.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from topology.state.kv import DELETED
from topology.state.providers import (
    StateError,
    StateProvider,
    TaskStore,
    decode,
    encode_keys,
    encode_writes,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    component TEXT NOT NULL, task INTEGER NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (component, task, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (  -- prepared write sets; a NULL value deletes the key
    component TEXT NOT NULL, task INTEGER NOT NULL, txid INTEGER NOT NULL, key BLOB NOT NULL,
    value BLOB, PRIMARY KEY (component, task, txid, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS committed (
    component TEXT NOT NULL, task INTEGER NOT NULL, txid INTEGER NOT NULL,
    PRIMARY KEY (component, task)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record (id INTEGER PRIMARY KEY CHECK (id = 0), value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS control (id INTEGER PRIMARY KEY CHECK (id = 0), value TEXT NOT NULL);
"""


def _busy(e: sqlite3.OperationalError) -> bool:
    text = str(e)
    return "locked" in text or "busy" in text


class _SqliteTaskStore(TaskStore):
    def __init__(self, provider: SqliteProvider, component: str, index: int) -> None:
        super().__init__(provider.topology, component, index)
        self._provider = provider
        self._key = (component, index)

    def _committed(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT txid FROM committed WHERE component = ? AND task = ?",
                         self._key).fetchone()
        return int(row[0]) if row else 0

    def _merge(self, db: sqlite3.Connection, txid: int) -> None:
        """Merge the prepared sets after the committed txid up to `txid`, in order."""
        committed = self._committed(db)
        if txid <= committed:
            return
        txids = [t for (t,) in db.execute(
            "SELECT DISTINCT txid FROM pending WHERE component = ? AND task = ? AND txid > ? "
            "AND txid <= ? ORDER BY txid", (*self._key, committed, txid))]
        for t in txids:
            db.execute("INSERT OR REPLACE INTO kv SELECT component, task, key, value FROM pending"
                       " WHERE component = ? AND task = ? AND txid = ? AND value IS NOT NULL",
                       (*self._key, t))
            db.execute("DELETE FROM kv WHERE component = ? AND task = ? AND key IN (SELECT key "
                       "FROM pending WHERE component = ? AND task = ? AND txid = ? AND value "
                       "IS NULL)", (*self._key, *self._key, t))
        db.execute("DELETE FROM pending WHERE component = ? AND task = ? AND txid < ?",
                   (*self._key, txid))
        db.execute("INSERT OR REPLACE INTO committed VALUES (?, ?, ?)", (*self._key, txid))

    def restore(self, txid: int) -> tuple[dict[Any, Any], dict[Any, Any]]:
        with self._provider.transaction(self.where, "restore") as db:
            committed = self._committed(db)
            if committed > txid:
                raise StateError(f"{self.where}: the store has txid {committed} committed, "
                                 f"after the record's {txid}: the record or the store was lost")
            self._merge(db, txid)
            self._drop_after(db, txid)
            state = {decode(k): decode(v) for k, v in db.execute(
                "SELECT key, value FROM kv WHERE component = ? AND task = ?", self._key)}
            changes = {decode(k): DELETED if v is None else decode(v) for k, v in db.execute(
                "SELECT key, value FROM pending WHERE component = ? AND task = ? AND txid = ?",
                (*self._key, txid))}
        return state, changes

    def prepare(self, txid: int, writes: Mapping[Any, Any], deletes: Iterable[Any]) -> None:
        rows: list[tuple[str, int, int, bytes, bytes | None]] = [
            (*self._key, txid, k, v) for k, v in encode_writes(self.where, writes)]
        rows += [(*self._key, txid, k, None) for k in encode_keys(self.where, deletes)]
        with self._provider.transaction(self.where, f"prepare txid {txid}") as db:
            db.execute("DELETE FROM pending WHERE component = ? AND task = ? AND txid = ?",
                       (*self._key, txid))
            db.executemany("INSERT INTO pending VALUES (?, ?, ?, ?, ?)", rows)

    def commit(self, txid: int) -> None:
        with self._provider.transaction(self.where, f"commit txid {txid}") as db:
            self._merge(db, txid)

    def rollback(self, txid: int) -> None:
        with self._provider.transaction(self.where, f"roll back after txid {txid}") as db:
            self._drop_after(db, txid)

    def _drop_after(self, db: sqlite3.Connection, txid: int) -> None:
        db.execute("DELETE FROM pending WHERE component = ? AND task = ? AND txid > ?",
                   (*self._key, txid))


class SqliteProvider(StateProvider):
    """Checkpoints in `directory`/<topology>.sqlite3 (durable; one host)."""

    kind = "sqlite"

    def __init__(self, topology: str, directory: str) -> None:
        super().__init__(topology)
        if not topology or "/" in topology or topology.startswith("."):
            raise StateError(f"sqlite state: topology name {topology!r} is not a file name")
        self.path = os.path.join(directory, f"{topology}.sqlite3")
        self._db: sqlite3.Connection | None = None
        self._control: dict[str, Any] | None = None
        self._control_version: int | None = None  # PRAGMA data_version when last read

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
            while True:
                try:
                    self._db = self._open()
                    break
                except sqlite3.OperationalError as e:
                    # Several tasks opening a new database at once: switching it to WAL
                    # answers "locked" without waiting on the busy timeout. Try again.
                    if not _busy(e) or time.monotonic() > deadline:
                        raise self._cannot_open(e) from None
                    time.sleep(random.uniform(0.005, 0.03))
                except (OSError, sqlite3.Error) as e:
                    raise self._cannot_open(e) from None
            log.debug("sqlite state %s: opened", self.path)
        return self._db

    def _open(self) -> sqlite3.Connection:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _cannot_open(self, e: Exception) -> StateError:
        return StateError(f"topology {self.topology!r}: cannot open its state database "
                          f"{self.path}: {e}")

    @contextmanager
    def transaction(self, where: str, what: str,
                    full_sync: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction; StateError naming `where` and `what` if it fails."""
        db = self._connect()
        try:
            if full_sync:
                db.execute("PRAGMA synchronous = FULL")
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as e:
            raise StateError(f"{where}: {what} failed in {self.path}: {e}") from None
        finally:
            if full_sync:
                db.execute("PRAGMA synchronous = NORMAL")

    def task_store(self, component: str, index: int) -> TaskStore:
        return _SqliteTaskStore(self, component, index)

    def _read(self, table: str, what: str) -> dict[str, Any] | None:
        try:
            row = self._connect().execute(f"SELECT value FROM {table} WHERE id = 0").fetchone()
        except sqlite3.Error as e:
            raise StateError(f"topology {self.topology!r}: cannot read its {what} from "
                             f"{self.path}: {e}") from None
        if row is None:
            return None
        try:
            record: dict[str, Any] = json.loads(row[0])
        except ValueError as e:
            raise StateError(f"topology {self.topology!r}: its {what} in {self.path} is "
                             f"damaged: {e}") from None
        return record

    def read_record(self) -> dict[str, Any] | None:
        return self._read("record", "commit record")

    def read_control(self) -> dict[str, Any] | None:
        # Spouts poll this every few ms: read the row again only if the database changed
        # (data_version: another connection committed since; ~10 us against ~70 us).
        try:
            version = self._connect().execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as e:
            raise StateError(f"topology {self.topology!r}: cannot read {self.path}: {e}") from None
        if version != self._control_version:
            self._control = self._read("control", "checkpoint directive")
            self._control_version = version
        return self._control  # the same object while unchanged: callers do not modify it

    def write_control(self, control: Mapping[str, Any]) -> None:
        text = json.dumps(dict(control))
        self._control_version = None  # this connection's own writes leave data_version as is
        with self.transaction(f"topology {self.topology!r}", "writing the directive") as db:
            db.execute("INSERT OR REPLACE INTO control VALUES (0, ?)", (text,))

    def write_record(self, record: Mapping[str, Any]) -> None:
        text = json.dumps(dict(record))
        where = f"topology {self.topology!r}"
        with self.transaction(where, "writing the commit record", full_sync=True) as db:
            db.execute("INSERT OR REPLACE INTO record VALUES (0, ?)", (text,))

    def clear(self) -> None:
        self._control_version = None
        with self.transaction(f"topology {self.topology!r}", "clearing its state") as db:
            for table in ("kv", "pending", "committed", "record", "control"):
                db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
