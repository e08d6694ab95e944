"""Following agents after spawn: list, wait, stop, logs.

Liveness comes from the supervisor's heartbeat key (a short TTL), not from
PIDs: a run whose heartbeat vanished without a completion record is lost,
and `wait` reports it failed within seconds instead of waiting for a timeout.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime

import redis

from cfn import keys
from cfn.coordination import completion
from cfn.errors import NegativeOutcome
from cfn.ids import validate_id

LIVE = ("starting", "running")
# a supervisor writes its first heartbeat right after starting the agent
STARTUP_GRACE_S = 15.0
CHECK_EVERY_S = 1.0


def runs(db, task_id: str | None = None, latest_only: bool = True) -> list[dict]:
    """Agent runs from the database, newest last (only each agent's latest run by default)."""
    where, args = ("WHERE task_id = ?", [validate_id(task_id, "task ID")]) if task_id else ("", [])
    rows = list(db.query(f"SELECT * FROM agents {where} ORDER BY id", args))
    if latest_only:
        latest = {(row["task_id"], row["agent_id"]): row for row in rows}
        rows = sorted(latest.values(), key=lambda row: row["id"])
    return rows


def _heartbeat(r: redis.Redis, row: dict) -> dict | None:
    raw = r.get(keys.heartbeat(row["task_id"], row["agent_id"]))
    return json.loads(raw) if raw else None


def _is_lost(r: redis.Redis, row: dict) -> bool:
    """A live-looking run whose supervisor no longer beats."""
    if row["status"] not in LIVE or _heartbeat(r, row):
        return False
    started = datetime.fromisoformat(row["started_at"].replace("Z", "+00:00")).timestamp()
    return time.time() - started > STARTUP_GRACE_S or row["status"] == "running"


def with_liveness(r: redis.Redis, db, rows: list[dict]) -> list[dict]:
    """Rows with status `lost` where the supervisor died; records it too."""
    for row in rows:
        if _is_lost(r, row):
            mark_lost(r, db, row)
            row["status"] = "lost"
    return rows


def mark_lost(r: redis.Redis, db, row: dict) -> None:
    """Record a run whose supervisor died as failed, in SQLite and in the completion stream."""
    from cfn.db import records

    records.finish_agent_run(db, row["id"], status="lost", exit_code=None, confidence=None,
                             handle=row["handle"])
    record = {"status": "lost", "run_id": row["id"], "agent_id": row["agent_id"],
              "task_id": row["task_id"], "error": "supervisor died; agent state unknown"}
    completion.signal_completion(r, row["task_id"], row["agent_id"], status="failure",
                                 payload=json.dumps(record), ttl=7 * 24 * 3600,
                                 max_bytes=1 << 20)


@dataclass(frozen=True)
class Waited:
    records: dict[str, dict]  # agent -> completion record
    timed_out: bool

    @property
    def all_succeeded(self) -> bool:
        return not self.timed_out and all(
            rec.get("status") == "success" for rec in self.records.values())


def wait(r: redis.Redis, db, task_id: str, run_ids: dict[str, int], *, timeout: float,
         phase: str | None = None, on_record=None) -> Waited:
    """Block until each agent in `run_ids` (agent -> run ID) completed that run, or timeout.

    Blocks on the completion stream a second at a time and checks heartbeats in
    between, so an agent whose supervisor died is reported failed within seconds.
    """
    key = keys.completion(task_id, phase)
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    last_id, block_ms = "0-0", None
    while True:
        for _stream, entries in r.xread({key: last_id}, block=block_ms) or ():
            for entry_id, fields in entries:
                last_id = entry_id
                record = _record(fields)
                agent = fields.get("agent")
                # a provider fallback continues the same agent in a later run
                if agent in run_ids and (record.get("run_id") or 0) >= run_ids[agent]:
                    if on_record and agent not in done:
                        on_record(agent, record)
                    done[agent] = record
        pending = [a for a in run_ids if a not in done]
        if not pending:
            return Waited(done, False)
        for agent in pending:
            row = latest_run(db, task_id, agent)
            if row and _is_lost(r, row):
                mark_lost(r, db, row)  # its completion record arrives on the next read
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Waited(done, True)
        block_ms = max(1, int(min(CHECK_EVERY_S, remaining) * 1000))


def _record(fields: dict[str, str]) -> dict:
    try:
        record = json.loads(fields.get("payload") or "{}")
    except ValueError:
        record = {}
    record.setdefault("status", fields.get("status"))
    return record


def latest_run(db, task_id: str, agent_id: str) -> dict | None:
    return next(db.query("SELECT * FROM agents WHERE task_id = ? AND agent_id = ?"
                         " ORDER BY id DESC LIMIT 1", [task_id, agent_id]), None)


def stop(r: redis.Redis, db, task_id: str, agent_id: str | None = None) -> list[str]:
    """Ask the supervisors of running agents to stop them; returns the agents asked."""
    asked = []
    for row in runs(db, task_id):
        if agent_id and row["agent_id"] != agent_id:
            continue
        beat = _heartbeat(r, row)
        if row["status"] in LIVE and beat:
            try:
                os.kill(beat["supervisor_pid"], signal.SIGTERM)
                asked.append(row["agent_id"])
            except ProcessLookupError:
                pass
    if agent_id and not asked:
        raise NegativeOutcome(f"agent {agent_id} of task {task_id} is not running")
    return asked
