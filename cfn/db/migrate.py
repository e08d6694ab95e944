"""Numbered SQL migrations with rollbacks, each applied in one transaction with its record.

Files: migrations/NNNN_name.sql and migrations/rollback/NNNN_name.sql. Each
applied migration is recorded in cfn_migrations with a checksum of both files;
a recorded migration whose files changed is refused. Statements are split with
sqlite3.complete_statement and run one by one inside BEGIN IMMEDIATE, so a
migration that fails half-way leaves the database exactly at its previous version.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from cfn.db import immediate, rows

if TYPE_CHECKING:
    from sqlite_utils import Database
from cfn.errors import InvalidInput

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_RECORDS = """
CREATE TABLE IF NOT EXISTS cfn_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""


class MigrationError(InvalidInput):
    """A migration cannot be applied or rolled back; nothing was changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: str
    down: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(f"{self.up}\0{self.down}".encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def packaged() -> Path:
    """The migrations shipped with cfn (the repository's migrations/ directory)."""
    return Path(str(files("cfn._migrations")))


def load(source: Path | None = None) -> list[Migration]:
    """Every migration in `source`, in version order; each must have its rollback."""
    source = source or packaged()
    found = []
    for path in sorted(source.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_name.sql")
        rollback = source / "rollback" / path.name
        if not rollback.is_file():
            raise MigrationError(f"{path.name} has no rollback file {rollback}; add one")
        found.append(Migration(int(match[1]), match[2], path.read_text(), rollback.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations in {source} share a version number")
    return found


def statements(sql: str) -> list[str]:
    """Split a script into complete statements (semicolons in strings or triggers are safe)."""
    result, start = [], 0
    for end, char in enumerate(sql):
        if char == ";" and sqlite3.complete_statement(sql[start:end + 1]):
            statement = sql[start:end + 1].strip()
            if _strip_comments(statement):
                result.append(statement)
            start = end + 1
    if _strip_comments(sql[start:]).strip():
        raise MigrationError(f"incomplete SQL statement at the end: {sql[start:].strip()[:60]!r}")
    return result


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql).strip(" \n\t;")


def applied(db: Database) -> dict[int, dict]:
    """Recorded migrations by version."""
    db.execute(_RECORDS)
    return {row["version"]: row for row in rows(db, "SELECT * FROM cfn_migrations")}


def current_version(db: Database) -> int:
    return max(applied(db), default=0)


def verify(db: Database, known: list[Migration]) -> None:
    """Refuse when an applied migration's files changed or are unknown to this cfn."""
    by_version = {m.version: m for m in known}
    for version, record in sorted(applied(db).items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{record['name']}, which this cfn "
                "does not know; upgrade cfn"
            )
        if migration.checksum != record["checksum"]:
            raise MigrationError(
                f"migration {migration.label} changed since it was applied (checksum "
                f"{record['checksum'][:12]} recorded, {migration.checksum[:12]} on disk); "
                "restore the original file and add a new migration for the change"
            )


def migrate(db: Database, to: int | None = None, source: Path | None = None) -> list[str]:
    """Apply pending migrations up to version `to` (default: all); returns their labels."""
    known = load(source)
    verify(db, known)
    done = []
    for migration in known:
        if to is not None and migration.version > to:
            break
        with immediate(db):
            if migration.version in applied(db):
                continue  # another process applied it while we waited for the lock
            _run(db, migration.up, migration.label)
            db.execute(
                "INSERT INTO cfn_migrations (version, name, checksum) VALUES (?, ?, ?)",
                [migration.version, migration.name, migration.checksum],
            )
        done.append(migration.label)
    return done


def rollback_plan(
    db: Database, *, steps: int | None = None, to: int | None = None,
    source: Path | None = None,
) -> list[Migration]:
    """The migrations a rollback would undo, newest first (default: the newest one)."""
    if steps is not None and to is not None:
        raise MigrationError("give --steps or --to, not both")
    if (steps is not None and steps < 1) or (to is not None and to < 0):
        raise MigrationError("--steps must be 1 or more and --to 0 or more")
    known = load(source)
    verify(db, known)
    by_version = {m.version: m for m in known}
    newest_first = sorted(applied(db), reverse=True)
    if to is not None:
        return [by_version[v] for v in newest_first if v > to]
    return [by_version[v] for v in newest_first[: steps or 1]]


def rollback(db: Database, plan: list[Migration]) -> list[str]:
    """Undo `plan` (from rollback_plan), each in one transaction with removing its record."""
    for migration in plan:
        with immediate(db):
            _run(db, migration.down, f"rollback of {migration.label}")
            db.execute("DELETE FROM cfn_migrations WHERE version = ?", [migration.version])
    return [m.label for m in plan]


def _run(db: Database, sql: str, label: str) -> None:
    for statement in statements(sql):
        try:
            db.execute(statement)
        except sqlite3.Error as exc:
            raise MigrationError(
                f"{label} failed at {statement.splitlines()[0][:70]!r}: {exc}; the database "
                "is unchanged"
            ) from None
