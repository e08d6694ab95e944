"""What the portal's metrics routes count, from the project database."""

from __future__ import annotations

from cfn.db import rows


def agents(db, task_id: str | None) -> dict:
    """Agent runs by status, with tokens and cost, for one task or all."""
    where, args = ("WHERE a.task_id = ?", [task_id]) if task_id else ("", [])
    found = rows(db, "SELECT a.status, count(*) AS runs, sum(c.input_tokens) AS input_tokens,"
                     " sum(c.output_tokens) AS output_tokens, sum(c.cost_usd) AS cost_usd"
                     f" FROM agents a LEFT JOIN cost_ledger c ON c.run_id = a.id {where}"
                     " GROUP BY a.status ORDER BY a.status", args)
    return {"taskId": task_id, "byStatus": found,
            "runs": sum(row["runs"] for row in found),
            "costUsd": sum(row["cost_usd"] or 0 for row in found)}


def tasks(db, task_id: str | None) -> dict:
    """Tasks by status, and the newest ones, for one task or all."""
    where, args = ("WHERE id = ?", [task_id]) if task_id else ("", [])
    found = rows(db, f"SELECT id, status, mode, epic, updated_at FROM tasks {where}"
                     " ORDER BY updated_at DESC LIMIT 100", args)
    by_status: dict[str, int] = {}
    for row in found:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    return {"taskId": task_id, "byStatus": by_status, "tasks": found}
