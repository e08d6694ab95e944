"""Durable records of what happened in Redis: results, decisions, and a task's history.

Every statement is parameterised; recording the same result twice is a no-op
(results are keyed by their Redis stream entry).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cfn.coordination.decisions import Decision
from cfn.coordination.results import Collection
from cfn.db import immediate
from cfn.ids import validate_id

if TYPE_CHECKING:
    import sqlite3

    from sqlite_utils import Database

# The agent-run records use only execute(), so a supervisor can pass a plain
# sqlite3 connection (cfn.db.connect_raw) and skip importing sqlite-utils.


def ensure_task(db: Database | sqlite3.Connection, task_id: str) -> None:
    db.execute("INSERT OR IGNORE INTO tasks (id) VALUES (?)", [validate_id(task_id, "task ID")])


def record_results(db: Database, collection: Collection) -> int:
    """Store each collected report once; returns how many were new."""
    with immediate(db):
        ensure_task(db, collection.task_id)
        before = db.conn.total_changes
        for rep in collection.results:
            db.execute(
                "INSERT OR IGNORE INTO results (task_id, agent_id, entry_id, status, confidence,"
                " result, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [collection.task_id, rep.agent_id, rep.entry_id, rep.status, rep.confidence,
                 None if rep.result is None else json.dumps(rep.result), rep.reported_at],
            )
        return db.conn.total_changes - before


def record_decision(db: Database, decision: Decision) -> int:
    """Store a decision; returns its row ID."""
    with immediate(db):
        ensure_task(db, decision.task_id)
        cursor = db.execute(
            "INSERT INTO decisions (task_id, iteration, decision, decided_by, confidence, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [decision.task_id, decision.iteration, decision.decision, decision.decided_by,
             decision.confidence, decision.reason],
        )
        return cursor.lastrowid


def history(db: Database, task_id: str) -> dict | None:
    """Everything recorded about a task, or None if nothing is."""
    task = next(db.query("SELECT * FROM tasks WHERE id = ?", [validate_id(task_id, "task ID")]),
                None)
    if task is None:
        return None

    def rows(table: str, order: str) -> list[dict]:
        return list(db.query(f"SELECT * FROM {table} WHERE task_id = ? ORDER BY {order}",
                             [task_id]))

    results = rows("results", "reported_at, id")
    for row in results:
        row["result"] = None if row["result"] is None else json.loads(row["result"])
    return {
        "task": task,
        "iterations": rows("loop_iterations", "iteration"),
        "agents": rows("agents", "id"),
        "results": results,
        "decisions": rows("decisions", "id"),
        "costs": rows("cost_ledger", "id"),
    }


def start_agent_run(db: Database | sqlite3.Connection, *, task_id: str, agent_id: str,
                    agent_type: str, runtime: str, provider: str | None, model: str | None,
                    log_path: str, iteration: int | None = None,
                    phase: str | None = None) -> int:
    """Record a run that is starting; returns its run ID."""
    with immediate(db):
        ensure_task(db, task_id)
        cursor = db.execute(
            "INSERT INTO agents (task_id, agent_id, agent_type, iteration, phase, runtime,"
            " provider, model, status, log_path, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
            " 'starting', ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            [task_id, agent_id, agent_type, iteration, phase, runtime, provider, model,
             log_path],
        )
        return cursor.lastrowid


def finish_agent_run(db: Database | sqlite3.Connection, run_id: int, *, status: str,
                     exit_code: int | None, confidence: float | None, handle: str | None,
                     input_tokens: int | None = None, output_tokens: int | None = None,
                     cost_usd: float | None = None) -> None:
    """Record how a run ended, and its cost when the agent reported one."""
    with immediate(db):
        db.execute(
            "UPDATE agents SET status = ?, exit_code = ?, confidence = ?, handle = ?,"
            " finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
            [status, exit_code, confidence, handle, run_id],
        )
        if any(v is not None for v in (input_tokens, output_tokens, cost_usd)):
            db.execute(
                "INSERT INTO cost_ledger (task_id, agent_id, run_id, provider, model,"
                " input_tokens, output_tokens, cost_usd) SELECT task_id, agent_id, id, provider,"
                " model, ?, ?, ? FROM agents WHERE id = ?",
                [input_tokens, output_tokens, cost_usd, run_id],
            )


def retry_agent_run(db: Database | sqlite3.Connection, run_id: int, *, provider: str,
                    model: str) -> int:
    """A new run of the same agent on another provider; returns its run ID."""
    with immediate(db):
        cursor = db.execute(
            "INSERT INTO agents (task_id, agent_id, agent_type, iteration, phase, runtime,"
            " provider, model, status, log_path, started_at) SELECT task_id, agent_id,"
            " agent_type, iteration, phase, runtime, ?, ?, 'starting', log_path,"
            " strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM agents WHERE id = ?",
            [provider, model, run_id],
        )
        return cursor.lastrowid


def mark_running(db: Database | sqlite3.Connection, run_id: int, handle: str) -> None:
    db.execute("UPDATE agents SET status = 'running', handle = ? WHERE id = ?", [handle, run_id])
