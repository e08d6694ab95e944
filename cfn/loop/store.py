"""The tasks and loop_iterations tables: what a loop was asked to do and how each
iteration ended. The only module that writes them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cfn.db import immediate
from cfn.errors import InvalidInput
from cfn.ids import validate_id

if TYPE_CHECKING:
    import sqlite3

    from sqlite_utils import Database

    from cfn.loop.spec import LoopSpec

_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
ENDED = ("proceeded", "aborted", "exhausted", "over-budget")  # a task's status once it ended


def ensure_task(db: Database | sqlite3.Connection, task_id: str) -> None:
    """Make sure the task has a row (every record of a task refers to it)."""
    db.execute("INSERT OR IGNORE INTO tasks (id) VALUES (?)", [validate_id(task_id, "task ID")])


def save_task(db: Database, spec: LoopSpec, status: str, report: dict | None = None) -> None:
    """Record the loop's spec and where it stands (with its final report once it ended)."""
    with immediate(db):
        ensure_task(db, spec.task_id)
        db.execute(
            f"UPDATE tasks SET epic = ?, mode = ?, spec = ?, status = ?, report = ?,"
            f" updated_at = {_NOW} WHERE id = ?",
            [spec.epic, spec.mode, spec.to_json(), status,
             None if report is None else json.dumps(report), spec.task_id])


def ended(db: Database, task_id: str) -> tuple[str, dict | None] | None:
    """(status, final report) of the task's loop if it ended, else None. The report is None
    for a loop that ended before cfn kept reports (migration 0005)."""
    row = next(db.query("SELECT status, report FROM tasks WHERE id = ?", [task_id]), None)
    if row is None or row["status"] not in ENDED:
        return None
    return row["status"], None if row["report"] is None else json.loads(row["report"])


def load_spec(db: Database, task_id: str) -> LoopSpec:
    """The options a loop was started with (for resume)."""
    from cfn.loop.spec import LoopSpec

    row = next(db.query("SELECT spec FROM tasks WHERE id = ?", [task_id]), None)
    if row is None or not row["spec"]:
        raise InvalidInput(f"task {task_id} has no loop to resume; start one with cfn loop run")
    return LoopSpec.from_json(row["spec"])


def decided_iterations(db: Database, task_id: str) -> list[dict]:
    """The task's iterations that reached a decision, in order (feedback parsed)."""
    rows = list(db.query("SELECT * FROM loop_iterations WHERE task_id = ? AND decision IS"
                         " NOT NULL ORDER BY iteration", [task_id]))
    for row in rows:
        row["feedback"] = json.loads(row["feedback"] or "[]")
    return rows


def record_iteration(db: Database, task_id: str, number: int, *, gate_score: float | None,
                     gate_passed: bool, consensus_score: float | None, consensus_passed: bool,
                     decision: str, feedback: list[str], reason: str) -> None:
    """Record how an iteration ended; call it inside a write transaction (the loop records
    the decision in the same one)."""
    db.execute(
        "INSERT OR REPLACE INTO loop_iterations (task_id, iteration, gate_score,"
        " gate_passed, consensus_score, consensus_passed, decision, feedback, reason,"
        f" finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {_NOW})",
        [task_id, number, gate_score, int(gate_passed), consensus_score,
         int(consensus_passed), decision, json.dumps(feedback), reason])


def status(db: Database, task_id: str) -> dict | None:
    """Where the task's loop stands: the task row, its last iteration, its running agents."""
    task = next(db.query("SELECT id, status, mode, epic, updated_at FROM tasks WHERE id = ?",
                         [validate_id(task_id, "task ID")]), None)
    if task is None:
        return None
    last = next(db.query("SELECT iteration, decision, reason FROM loop_iterations WHERE"
                         " task_id = ? ORDER BY iteration DESC LIMIT 1", [task_id]), None)
    from cfn.agents import runs

    running = [row["agent_id"] for row in runs.listing(db, task_id) if row["status"] in runs.LIVE]
    return {**task, "last_iteration": last, "running_agents": running}
