"""The results and decisions tables, and a task's whole recorded history.
The only module that writes those two tables.

Decisions are recorded in SQLite first and published to Redis from that record, as an
outbox: a decision's `published_at` stays NULL until Redis holds it (or a later one), and
whoever next reads or writes the task's decisions publishes what a killed process left
unpublished. So Redis never announces a decision SQLite lacks, nor keeps an older one.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from cfn.coordination import decisions
from cfn.coordination.decisions import Decision
from cfn.coordination.results import Collection
from cfn.db import immediate, rows
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
    """Record the decision, then publish the task's newest from SQLite; returns the decision
    as recorded (stamped with the time it was made and its seq). Should publishing fail,
    the decision stays recorded, and the next process to touch the task's decisions
    publishes it."""
    with immediate(db):
        made = record_decision(db, decision)
    publish_pending(r, db, decision.task_id, ttl=ttl)
    return made


def record_decision(db: Database | sqlite3.Connection, decision: Decision) -> Decision:
    """Add the decision to the outbox, unpublished; call it inside a write transaction."""
    ensure_task(db, decision.task_id)
    made_at = datetime.fromtimestamp(decision.decided_at, timezone.utc) \
        if decision.decided_at else datetime.now(timezone.utc)
    row_id = db.execute(
        "INSERT INTO decisions (task_id, iteration, decision, decided_by, confidence, reason,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [decision.task_id, decision.iteration, decision.decision, decision.decided_by,
         decision.confidence, decision.reason,
         made_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")]).lastrowid
    return _decision(rows(db, "SELECT * FROM decisions WHERE id = ?", [row_id])[0])


def publish_pending(r: redis.Redis, db: Database | sqlite3.Connection, task_id: str, *,
                    ttl: int) -> Decision | None:
    """Give Redis the task's newest decision if it has not had it yet (a process killed
    between recording and publishing left it); returns it if it was pending.

    Redis takes it unless it holds a later one (another process published meanwhile), and
    every decision up to it is marked published. A process killed in between leaves them
    unpublished: publishing again is harmless."""
    found = rows(db, "SELECT * FROM decisions WHERE task_id = ? ORDER BY id DESC LIMIT 1",
                 [task_id])
    if not found or found[0]["published_at"] is not None:
        return None  # publishing marks every older decision too: none is pending
    newest = _decision(found[0])
    decisions.publish(r, newest, ttl=ttl)
    with immediate(db):
        db.execute("UPDATE decisions SET published_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                   " WHERE task_id = ? AND published_at IS NULL AND id <= ?",
                   [task_id, newest.seq])
    return newest


def _decision(row: dict) -> Decision:
    made_at = datetime.fromisoformat(row["created_at"].replace("Z", "+00:00"))
    return Decision(row["task_id"], row["decision"], row["iteration"], row["decided_by"],
                    row["confidence"], row["reason"], made_at.timestamp(), row["id"])


def task_history(db: Database, task_id: str) -> dict | None:
    """Everything recorded about a task, or None if nothing is."""
    task = next(db.query("SELECT * FROM tasks WHERE id = ?", [validate_id(task_id, "task ID")]),
                None)
    if task is None:
        return None

    def rows(table: str, order: str) -> list[dict]:
        return list(db.query(f"SELECT * FROM {table} WHERE task_id = ? ORDER BY {order}",
                             [task_id]))

    from cfn.agents import runs

    results = rows("results", "reported_at, id")
    for row in results:
        row["result"] = None if row["result"] is None else json.loads(row["result"])
    return {
        "task": task,
        "iterations": rows("loop_iterations", "iteration"),
        "agents": runs.with_costs(db, task_id),
        "results": results,
        "decisions": rows("decisions", "id"),
        "costs": rows("cost_ledger", "id"),
    }
