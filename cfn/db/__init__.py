"""The persistent layer: one SQLite database per project, in the state directory.

Redis holds transient coordination state; what must last (results, decisions,
agent runs, costs, the skills registry) is written here. The database runs in
WAL mode with a busy timeout so concurrent cfn processes wait for each other
instead of failing, and opening it migrates it forward (cfn.db.migrate).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_utils import Database

DB_FILE = "cfn.db"
BUSY_TIMEOUT_S = 30.0


def db_path(home: Path) -> Path:
    return home / DB_FILE


def connect_raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection with cfn's settings (autocommit, busy timeout, foreign keys).

    For hot paths that only execute statements: an agent's supervisor records
    its run with it and so does not import sqlite-utils (~70 ms of imports).
    """
    _create_private(path)
    # autocommit at the driver level: transactions are explicit (see `immediate`)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    conn.execute("PRAGMA foreign_keys = ON")
    # under WAL, NORMAL loses no committed transaction when a process crashes (only a power
    # loss can take the last ones back), and saves an fsync per commit
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _create_private(path: Path) -> None:
    """Create the database file 0600 in an owner-only directory before SQLite opens it:
    SQLite gives its -wal and -shm files the database file's permissions.

    An existing file is never opened here: closing any descriptor of a file drops every
    POSIX lock this process holds on it, so a second connection opened beside a first
    would leave the first unlocked, and another process closing its last connection would
    then checkpoint and delete the WAL under it (its later commits lost)."""
    from cfn.config import ensure_home

    ensure_home(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def connect(path: Path) -> Database:
    """Open (creating if needed) a database in WAL mode, without migrating it."""
    from sqlite_utils import Database

    return Database(_in_wal(connect_raw(path), path), execute_plugins=False)


def _in_wal(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """The connection, its database switched to WAL if it is new. One process at a time:
    the switch needs the database to itself and fails at once (no busy wait) when another
    process is opening it too."""
    def mode() -> str:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]

    if mode() != "wal":
        lock_path = path.with_name(path.name + ".init-lock")
        with os.fdopen(os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if mode() != "wal":
                conn.execute("PRAGMA journal_mode = wal")
    return conn


def rows(db: Database | sqlite3.Connection, sql: str, args: list | tuple = ()) -> list[dict]:
    """Query results as dicts, on a sqlite-utils Database or a plain connection alike."""
    cursor = db.execute(sql, args)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def open_db(home: Path) -> Database:
    """The project's database, migrated to the newest schema this cfn knows."""
    from cfn.db import migrate

    db = connect(db_path(home))
    migrate.migrate(db)
    return db


def open_plain(home: Path) -> sqlite3.Connection:
    """The same database, migrated, as a plain sqlite3 connection: for commands that only
    record (sqlite-utils' import alone costs more than 100 ms)."""
    from cfn.db import migrate

    path = db_path(home)
    conn = _in_wal(connect_raw(path), path)
    migrate.migrate(conn)
    return conn


def open_existing_read_only(home: Path) -> sqlite3.Connection | None:
    """The project database for reading only, None if there is none yet (never created or
    migrated here: for lookups such as shell completion)."""
    path = db_path(home)
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True) if path.exists() else None


@contextmanager
def immediate(db: Database | sqlite3.Connection) -> Iterator[Database | sqlite3.Connection]:
    """A write transaction that takes the write lock up front.

    A deferred transaction that reads before it writes can fail with
    SQLITE_BUSY when another process wrote meanwhile; BEGIN IMMEDIATE waits
    for the lock (up to the busy timeout) instead.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
