"""The results and decisions tables, and a task's whole recorded history.
The only module that writes those two tables.

Decisions are recorded in SQLite first and published to Redis from that record, so
the durable record never misses a decision that Redis announced.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from cfn.coordination import decisions
from cfn.coordination.decisions import Decision
from cfn.coordination.results import Collection
from cfn.db import immediate
from cfn.ids import validate_id
from cfn.loop.store import ensure_task

if TYPE_CHECKING:
    import sqlite3

    import redis
    from sqlite_utils import Database


def record_results(db: Database | sqlite3.Connection, collection: Collection) -> int:
    """Store each collected report once (keyed by its stream entry); returns how many were new."""
    with immediate(db):
        ensure_task(db, collection.task_id)
        return sum(db.execute(
            "INSERT OR IGNORE INTO results (task_id, agent_id, entry_id, status, confidence,"
            " result, reported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [collection.task_id, rep.agent_id, rep.entry_id, rep.status, rep.confidence,
             None if rep.result is None else json.dumps(rep.result), rep.reported_at],
        ).rowcount for rep in collection.results)


def decide(r: redis.Redis, db: Database | sqlite3.Connection, decision: Decision, *,
           ttl: int) -> Decision:
    """Record the decision, then make it the task's latest in Redis; returns it stamped
    with the time it was made."""
    made = replace(decision, decided_at=decision.decided_at or time.time())
    with immediate(db):
        ensure_task(db, made.task_id)
        db.execute(
            "INSERT INTO decisions (task_id, iteration, decision, decided_by, confidence, reason)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [made.task_id, made.iteration, made.decision, made.decided_by, made.confidence,
             made.reason],
        )
    decisions.publish(r, made, ttl=ttl)
    return made


def task_history(db: Database, task_id: str) -> dict | None:
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
