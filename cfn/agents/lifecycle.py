"""Following agents after spawn: list, wait, stop.

Liveness comes from the supervisor's heartbeat key (a short TTL), not from
PIDs: a run whose heartbeat vanished without a completion record is lost,
and `wait` reports it failed within seconds instead of waiting for a timeout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfn import defaults, keys, outage
from cfn.agents import runs
from cfn.coordination import agents as agent_state
from cfn.coordination import streams
from cfn.errors import NegativeOutcome

if TYPE_CHECKING:
    from cfn.project import Project


def is_lost(project: Project, row: dict) -> bool:
    """A live-looking run whose supervisor is gone: its process has died, or (one on another
    machine) it no longer beats, given a heartbeat's time to come back after Redis was out
    of reach (heartbeats lapse while it is)."""
    from cfn.agents import supervision

    if row["status"] not in runs.LIVE:
        return False
    if row.get("supervisor_pid"):  # this machine's: the process says it
        return not supervision.alive(row["supervisor_pid"])
    if outage.seen_within(defaults.HEARTBEAT_TTL_S) or \
            agent_state.heartbeat(project.redis, row["task_id"], row["agent_id"]):
        return False
    return time.time() - runs.started(row) > defaults.STARTUP_GRACE_S or row["status"] == "running"


def with_liveness(project: Project, rows: list[dict]) -> list[dict]:
    """Rows with status `lost` where the supervisor died; records it too, and publishes
    what a supervisor recorded and did not live to publish (publish_pending)."""
    publish_pending(project)
    for row in rows:
        if is_lost(project, row):
            mark_lost(project, row)
            row["status"] = "lost"
    return rows


def mark_lost(project: Project, row: dict) -> None:
    """Record a run whose supervisor died as failed where a finished run is recorded:
    SQLite, then a failure report (unless the agent reported during this run) and the
    completion record (its phase's stream) together; and remove its Redis user (its agent
    died with the supervisor)."""
    r, task_id, agent_id = project.redis, row["task_id"], row["agent_id"]
    record = {"status": "lost", "run_id": row["id"], "agent_id": agent_id,
              "task_id": task_id, "error": "supervisor died; agent state unknown"}
    report = None if _reported_since(r, task_id, agent_id, runs.started(row)) else {
        "status": "failure", "confidence": None, "result": {"status": "lost"}}
    outbox = records(row, record_id=f"{agent_id}-{row['id']}-lost-{row['started_at']}",
                     status="failure", payload=json.dumps(record), report=report)
    runs.finish(project.sqlite, row["id"], status="lost", exit_code=None, confidence=None,
                handle=row["handle"], outbox=outbox)
    publish(project, row["id"], outbox)


def records(row: dict, *, record_id: str, status: str, payload: str,
            report: dict | None) -> dict:
    """What Redis is to get for a finished run (its outbox): the report (None when the agent
    reported itself), the completion record, and the Redis user to remove."""
    return {"task_id": row["task_id"], "agent_id": row["agent_id"], "phase": row["phase"],
            "record_id": record_id, "status": status, "payload": payload, "report": report,
            "acl_user": row.get("acl_user")}


def publish(project: Project, run_id: int, outbox: dict) -> None:
    """Remove a finished run's Redis user, write its records to Redis from its outbox, and
    mark them published. Safe to repeat, from any trusted process: the records carry the
    run's record ID, so writing them again adds nothing."""
    r = project.redis
    if outbox["acl_user"]:  # first: once its completion is announced, its credentials are gone
        agent_state.delete_user(r, outbox["acl_user"])
    agent_state.finish(r, outbox["task_id"], outbox["agent_id"], record_id=outbox["record_id"],
                       status=outbox["status"], payload=outbox["payload"],
                       phase=outbox["phase"], report=outbox["report"], ttl=project.key_ttl,
                       max_bytes=project.max_payload)
    runs.published(project.sqlite, run_id)


def publish_pending(project: Project) -> None:
    """Publish the records of runs finished in SQLite that Redis has not had for a few
    seconds: their supervisor died in between (or Redis refused them)."""
    for row in runs.unpublished(project.sqlite, defaults.OUTBOX_GRACE_S):
        publish(project, row["id"], json.loads(row["outbox"]))
        beat = agent_state.heartbeat(project.redis, row["task_id"], row["agent_id"]) or {}
        if beat.get("run_id") == row["id"]:  # the dead supervisor's, not a newer run's
            agent_state.unclaim(project.redis, row["task_id"], row["agent_id"])


def _reported_since(r, task_id: str, agent_id: str, since: float) -> bool:
    from cfn.coordination import results

    latest, _ = streams.latest_by_agent(r, keys.results(task_id))
    return agent_id in latest and results.entry_time(latest[agent_id][0]) >= since


@dataclass(frozen=True)
class Waited:
    records: dict[str, dict]  # agent -> completion record
    timed_out: bool

    @property
    def all_succeeded(self) -> bool:
        return not self.timed_out and all(
            rec.get("status") == "success" for rec in self.records.values())


def wait(project: Project, task_id: str, run_ids: dict[str, int], *, timeout: float,
         phase: str | None = None,
         on_record: Callable[[str, dict], None] | None = None) -> Waited:
    """Block until each agent in `run_ids` (agent -> run ID) completed that run, or timeout.

    Blocks on the completion stream a second at a time and checks heartbeats in
    between, so an agent whose supervisor died is reported failed within seconds.
    """
    r = project.redis
    key = keys.completion(task_id, phase)
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    last_id, block = "0-0", False
    while True:
        for _stream, entries in streams.read_after(
                r, key, last_id, deadline, block=block,
                slice_s=defaults.LIVENESS_CHECK_S) or ():
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
        publish_pending(project)  # records a dead supervisor left in SQLite only
        for agent in pending:
            row = runs.latest(project.db, task_id, agent)
            if row and is_lost(project, row):
                mark_lost(project, row)  # its completion record arrives on the next read
        if deadline - time.monotonic() <= 0:
            return Waited(done, True)
        block = True


def _record(fields: dict[str, str]) -> dict:
    try:
        record = json.loads(fields.get("payload") or "{}")
    except ValueError:
        record = {}
    record.setdefault("status", fields.get("status"))
    return record


def stop(project: Project, task_id: str, agent_id: str | None = None) -> list[str]:
    """Ask the supervisor to stop running agents; returns the agents asked."""
    from cfn.agents import supervision

    asked = []
    for row in runs.listing(project.db, task_id):
        if agent_id and row["agent_id"] != agent_id:
            continue
        if row["status"] in runs.LIVE and \
                supervision.stop(project.home, task_id, row["agent_id"]):
            asked.append(row["agent_id"])
    if agent_id and not asked:
        raise NegativeOutcome(f"agent {agent_id} of task {task_id} is not running")
    return asked
