"""The worker_runs table: what this machine's daemons ran, and what came of it. The only
module that writes it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cfn.db import rows

if TYPE_CHECKING:
    import sqlite3

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
MAX_OUTPUT_CHARS = 256 * 1024  # of a raw answer kept; the whole of it stays in the run's log


def start(db: sqlite3.Connection, *, job_id: str, worker: str, origin: str, mode: str,
          sandbox: str | None, model: str | None, reason: str | None) -> int:
    return db.execute(
        "INSERT INTO worker_runs (job_id, worker, origin, mode, sandbox, model, status, reason,"
        f" started_at) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, {_NOW})",
        [job_id, worker, origin, mode, sandbox, model, reason]).lastrowid


def finish(db: sqlite3.Connection, run_id: int, *, status: str, reason: str | None = None,
           result: dict | None = None, output: str | None = None,
           violations: list | None = None, agent_run_id: int | None = None,
           input_tokens: int | None = None, output_tokens: int | None = None,
           cost_usd: float | None = None) -> None:
    db.execute(
        "UPDATE worker_runs SET status = ?, reason = coalesce(?, reason), result = ?,"
        " output = ?, violations = ?, agent_run_id = ?, input_tokens = ?, output_tokens = ?,"
        f" cost_usd = ?, finished_at = {_NOW} WHERE id = ?",
        [status, reason, None if result is None else json.dumps(result),
         None if output is None else output[:MAX_OUTPUT_CHARS],
         json.dumps(violations) if violations else None, agent_run_id, input_tokens,
         output_tokens, cost_usd, run_id])


def skipped(db: sqlite3.Connection, *, job_id: str, worker: str, origin: str, mode: str,
            reason: str) -> int:
    """A run that did not happen, and why (a budget, no local version)."""
    run_id = start(db, job_id=job_id, worker=worker, origin=origin, mode=mode, sandbox=None,
                   model=None, reason=reason)
    finish(db, run_id, status="skipped")
    return run_id


def recent(db: sqlite3.Connection, worker: str | None = None, limit: int = 20) -> list[dict]:
    """The newest runs first."""
    where, args = ("WHERE worker = ?", [worker]) if worker else ("", [])
    return _decoded(rows(db, f"SELECT * FROM worker_runs {where} ORDER BY id DESC LIMIT ?",
                         [*args, limit]))


def get(db: sqlite3.Connection, job_id: str) -> dict | None:
    """The newest run of a job on this machine."""
    found = _decoded(rows(db, "SELECT * FROM worker_runs WHERE job_id = ? ORDER BY id DESC"
                          " LIMIT 1", [job_id]))
    return found[0] if found else None


def _decoded(found: list[dict]) -> list[dict]:
    for row in found:
        for column in ("result", "violations"):
            row[column] = json.loads(row[column]) if row[column] else None
    return found
