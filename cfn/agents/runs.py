"""The agents and cost_ledger tables: one row per run of an agent, and what it cost.
The only module that writes them.

Every function uses only `execute`/`query`-style calls that a plain sqlite3 connection
also has (see Project.sqlite), so a supervisor can record runs without sqlite-utils.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from cfn.db import immediate, rows
from cfn.ids import validate_id
from cfn.loop.store import ensure_task

if TYPE_CHECKING:
    import sqlite3

    from sqlite_utils import Database

LIVE = ("starting", "running")
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def start(db: Database | sqlite3.Connection, *, task_id: str, agent_id: str, agent_type: str,
          runtime: str, provider: str | None, model: str | None, log_dir: Path,
          iteration: int | None = None, phase: str | None = None,
          acl_user: str | None = None) -> tuple[int, Path]:
    """Record a run that is starting, with its log path; returns (run ID, log path)."""
    with immediate(db):
        ensure_task(db, task_id)
        run_id = db.execute(
            "INSERT INTO agents (task_id, agent_id, agent_type, iteration, phase, runtime,"
            " provider, model, acl_user, status, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
            f" ?, 'starting', {_NOW})",
            [task_id, agent_id, agent_type, iteration, phase, runtime, provider, model,
             acl_user],
        ).lastrowid
        log_path = log_dir / f"{agent_id}-{run_id}.log"
        db.execute("UPDATE agents SET log_path = ? WHERE id = ?", [str(log_path), run_id])
    return run_id, log_path


def mark_running(db: Database | sqlite3.Connection, run_id: int, handle: str,
                 supervisor_pid: int) -> None:
    db.execute("UPDATE agents SET status = 'running', handle = ?, supervisor_pid = ?"
               " WHERE id = ?", [handle, supervisor_pid, run_id])


def finish(db: Database | sqlite3.Connection, run_id: int, *, status: str,
           exit_code: int | None, confidence: float | None, handle: str | None,
           input_tokens: int | None = None, output_tokens: int | None = None,
           cost_usd: float | None = None, outbox: dict | None = None) -> None:
    """Record how a run ended, its cost when the agent reported one, and the records Redis
    is to get (`outbox`: cfn.agents.lifecycle.publish), in one transaction."""
    with immediate(db):
        db.execute(
            "UPDATE agents SET status = ?, exit_code = ?, confidence = ?, handle = ?,"
            f" outbox = ?, finished_at = {_NOW} WHERE id = ?",
            [status, exit_code, confidence, handle,
             json.dumps(outbox) if outbox else None, run_id],
        )
        if any(v is not None for v in (input_tokens, output_tokens, cost_usd)):
            db.execute(  # once per run, however often its end is recorded
                "INSERT INTO cost_ledger (task_id, agent_id, run_id, provider, model,"
                " input_tokens, output_tokens, cost_usd) SELECT task_id, agent_id, id, provider,"
                " model, ?, ?, ? FROM agents WHERE id = ? AND NOT EXISTS (SELECT 1 FROM"
                " cost_ledger WHERE run_id = ?)",
                [input_tokens, output_tokens, cost_usd, run_id, run_id],
            )


def published(db: Database | sqlite3.Connection, run_id: int) -> None:
    """Redis holds the run's records now."""
    db.execute("UPDATE agents SET outbox = NULL WHERE id = ?", [run_id])


def unpublished(db, older_than_s: float) -> list[dict]:
    """Finished runs whose records Redis has not had for `older_than_s` seconds."""
    return rows(db, "SELECT * FROM agents WHERE outbox IS NOT NULL AND finished_at <"
                " strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) ORDER BY id",
                [f"-{older_than_s} seconds"])


def retry(db: Database | sqlite3.Connection, run_id: int, *, provider: str, model: str) -> int:
    """A new run of the same agent on another provider; returns its run ID."""
    with immediate(db):
        return db.execute(
            "INSERT INTO agents (task_id, agent_id, agent_type, iteration, phase, runtime,"
            " provider, model, acl_user, status, log_path, started_at) SELECT task_id,"
            " agent_id, agent_type, iteration, phase, runtime, ?, ?, acl_user, 'starting',"
            f" log_path, {_NOW}"
            " FROM agents WHERE id = ?",
            [provider, model, run_id],
        ).lastrowid


def listing(db, task_id: str | None = None, latest_only: bool = True) -> list[dict]:
    """Agent runs, oldest first (only each agent's latest run by default)."""
    where, args = ("WHERE task_id = ?", [validate_id(task_id, "task ID")]) if task_id else ("", [])
    found = rows(db, f"SELECT * FROM agents {where} ORDER BY id", args)
    if latest_only:
        latest = {(row["task_id"], row["agent_id"]): row for row in found}
        found = sorted(latest.values(), key=lambda row: row["id"])
    return found


def with_costs(db, task_id: str) -> list[dict]:
    """Every run of the task, oldest first, with the tokens and cost it reported
    (input_tokens, output_tokens, cost_usd: None when it reported none) and its
    duration_s (None while it runs)."""
    found = rows(db, "SELECT a.*, sum(c.input_tokens) AS input_tokens, sum(c.output_tokens)"
                     " AS output_tokens, sum(c.cost_usd) AS cost_usd FROM agents a LEFT JOIN"
                     " cost_ledger c ON c.run_id = a.id WHERE a.task_id = ? GROUP BY a.id"
                     " ORDER BY a.id", [validate_id(task_id, "task ID")])
    for row in found:
        row["duration_s"] = seconds_between(row["started_at"], row["finished_at"])
    return found


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one recorded ISO time to another, None if either is missing."""
    if not start or not end:
        return None
    return round(timestamp(end) - timestamp(start), 3)


def timestamp(iso: str) -> float:
    """A recorded time ('2026-01-01T10:00:00.000Z') as a Unix timestamp."""
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def live(db) -> list[dict]:
    """Every run still marked starting or running."""
    return rows(db, "SELECT * FROM agents WHERE status IN (?, ?) ORDER BY id", list(LIVE))


def latest(db, task_id: str, agent_id: str, iteration: int | None = None) -> dict | None:
    """The agent's newest run (in `iteration`, when given), or None."""
    sql, args = "SELECT * FROM agents WHERE task_id = ? AND agent_id = ?", [task_id, agent_id]
    if iteration is not None:
        sql, args = sql + " AND iteration = ?", [*args, iteration]
    return next(iter(rows(db, sql + " ORDER BY id DESC LIMIT 1", args)), None)


def total_cost(db, task_id: str) -> float:
    """What the task's agents reported spending, in USD."""
    return float(db.execute("SELECT coalesce(sum(cost_usd), 0) FROM cost_ledger WHERE"
                            " task_id = ?", [task_id]).fetchone()[0])


def get(db, run_id: int) -> dict | None:
    """One run by its ID, or None."""
    return next(iter(rows(db, "SELECT * FROM agents WHERE id = ?", [run_id])), None)


def started(row: dict) -> float:
    """When the run started, in Unix seconds."""
    return _timestamp(row["started_at"])


def elapsed(row: dict) -> float | None:
    """How long the run took, or has been running so far, in seconds; None before it
    started."""
    import time

    if not row.get("started_at"):
        return None
    end = _timestamp(row["finished_at"]) if row.get("finished_at") else time.time()
    return max(0.0, end - started(row))


def _timestamp(text: str) -> float:
    """Unix seconds of a time SQLite recorded (_NOW: ISO 8601, UTC)."""
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def known_ids(db) -> tuple[list[str], list[str]]:
    """Every task ID and agent ID the project has seen (for shell completion)."""
    tasks = [row[0] for row in db.execute("SELECT id FROM tasks UNION SELECT task_id FROM agents")]
    agents = [row[0] for row in db.execute("SELECT DISTINCT agent_id FROM agents")]
    return tasks, agents
