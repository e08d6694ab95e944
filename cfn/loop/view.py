"""Following a loop as it runs: its event stream folded into a picture of iterations and
agents (for `cfn loop watch` and `cfn demo`), and each event said in one plain line.

The events (`coord:{T}:events`) say what happened; the database adds what each run cost
and how long it took. Following blocks on the stream (XREAD), waking at least once a
second so that elapsed times move and an orchestrator that died is noticed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfn import keys
from cfn.coordination import streams
from cfn.loop import store

if TYPE_CHECKING:
    from cfn.project import Project

TICK_S = 1.0  # a follower wakes this often without events (elapsed times, liveness)
EXIT_CODES = {"proceeded": 0}  # every other ending exits 1, as `cfn loop run` does


@dataclass
class AgentView:
    agent: str
    phase: str
    run_id: int | None = None
    status: str = "starting"
    confidence: float | None = None
    started: float | None = None  # Unix time
    finished: float | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    provider: str | None = None
    model: str | None = None

    def elapsed(self, now: float) -> float | None:
        return None if self.started is None else (self.finished or now) - self.started


@dataclass
class IterationView:
    number: int
    agents: dict[str, AgentView] = field(default_factory=dict)
    gate: dict | None = None  # the verdict: score, passed, why
    consensus: dict | None = None
    decision: str | None = None
    reason: str = ""


@dataclass
class LoopView:
    """What a follower knows of a loop: thresholds, iterations, agents, how it ended."""

    task_id: str
    mode: str = "?"
    gate: float | None = None
    consensus: float | None = None
    max_iterations: int | None = None
    budget_usd: float | None = None
    cost_usd: float = 0.0
    iterations: dict[int, IterationView] = field(default_factory=dict)
    ended: str | None = None  # the loop's final status
    reason: str = ""
    gone: bool = False  # running, but no orchestrator drives it

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.ended or "", 1)

    def iteration(self, number: int) -> IterationView:
        return self.iterations.setdefault(number, IterationView(number))

    def apply(self, kind: str, number: int, data: dict) -> None:
        """Fold one event in."""
        it = self.iteration(number) if kind not in ("loop_start", "loop_end") else None
        if kind == "loop_start":
            self.ended = None  # a resumed or continued loop goes on
            self.mode, self.gate, self.consensus = data.get("mode", "?"), data.get("gate"), \
                data.get("consensus")
            self.max_iterations, self.budget_usd = data.get("iterations"), data.get("budget_usd")
        elif kind in ("agent_start", "agent_done"):
            agent = it.agents.setdefault(data["agent"], AgentView(data["agent"],
                                                                  data.get("phase", "")))
            agent.run_id = data.get("run_id", agent.run_id)
            if kind == "agent_done":
                agent.status, agent.confidence = data.get("status") or "?", \
                    data.get("confidence")
        elif kind in ("gate", "consensus"):
            setattr(it, kind, data)
        elif kind == "decision":
            it.decision, it.reason = data.get("decision"), data.get("reason", "")
            self.cost_usd = data.get("cost_usd", self.cost_usd)
        elif kind == "loop_end":
            self.ended, self.reason = data.get("status"), data.get("reason", "")

    def add_runs(self, runs_: list[dict]) -> None:
        """Times, tokens, cost, provider and model from the task's recorded runs."""
        from cfn.agents.runs import timestamp

        by_id = {row["id"]: row for row in runs_}
        for it in self.iterations.values():
            for agent in it.agents.values():
                row = by_id.get(agent.run_id)
                if row is None:
                    continue
                agent.started = timestamp(row["started_at"]) if row["started_at"] else None
                agent.finished = timestamp(row["finished_at"]) if row["finished_at"] else None
                if agent.status == "starting" or row["status"] not in ("starting", "running"):
                    agent.status = row["status"]
                agent.provider, agent.model = row["provider"], row["model"]
                agent.cost_usd = row["cost_usd"]
                if row["input_tokens"] is not None or row["output_tokens"] is not None:
                    agent.tokens = (row["input_tokens"] or 0) + (row["output_tokens"] or 0)
        self.cost_usd = max(self.cost_usd, sum(r["cost_usd"] or 0 for r in runs_))


def describe(task_id: str, kind: str, number: int, data: dict) -> str:
    """One event in a plain line (no escape codes), as a piped `cfn loop watch` prints it."""
    if kind == "loop_start":
        return (f"{task_id} started ({data.get('mode')}): gate {data.get('gate')}, "
                f"consensus {data.get('consensus')}, up to {data.get('iterations')} iterations")
    if kind == "agent_start":
        return f"{task_id} #{number} {data['agent']} started ({data.get('phase')})"
    if kind == "agent_done":
        confidence = data.get("confidence")
        return (f"{task_id} #{number} {data['agent']} {data.get('status')}"
                + ("" if confidence is None else f", confidence {confidence:.2f}"))
    if kind in ("gate", "consensus"):
        word = ("passed" if data.get("passed") else "failed") if kind == "gate" else \
            ("reached" if data.get("passed") else "not reached")
        return f"{task_id} #{number} {kind} {word}: {data.get('why')}"
    if kind == "decision":
        return f"{task_id} #{number} decision {data.get('decision')}: {data.get('reason')}"
    if kind == "loop_end":
        return f"{task_id} ended: {data.get('status')} ({data.get('reason')})"
    return f"{task_id} #{number} {kind} {json.dumps(data)}"


@dataclass(frozen=True)
class Event:
    kind: str
    iteration: int
    data: dict
    at: float  # Unix time, from the stream entry's ID


def _event(entry_id: str, fields: dict) -> Event:
    return Event(fields.get("type", "?"), int(fields.get("iteration") or 0),
                 json.loads(fields.get("data") or "{}"), int(entry_id.split("-")[0]) / 1000)


def follow(project: Project, task_id: str) -> Iterator[Event | None]:
    """The loop's events so far, then each new one as it comes (a blocking read); None
    about once a second without events. Ends after a `loop_end` nothing follows."""
    key, r = keys.events(task_id), project.redis
    backlog = r.xrange(key)
    last_id = backlog[-1][0] if backlog else "0"
    for entry_id, fields in backlog:
        yield _event(entry_id, fields)
        if fields.get("type") == "loop_end" and entry_id == last_id:
            return
    while True:
        found = streams.read_after(r, key, last_id, time.monotonic() + TICK_S, slice_s=TICK_S)
        if not found:
            yield None
            continue
        for entry_id, fields in found[0][1]:
            last_id = entry_id
            yield _event(entry_id, fields)
            if fields.get("type") == "loop_end":
                return


def events_after(project: Project, task_id: str, cursor: str, timeout: float
                 ) -> tuple[list[dict], str]:
    """The loop's events after `cursor` (a stream entry ID; "0": from the first), waiting up
    to `timeout` seconds for one when there is none yet; and the cursor that follows them."""
    key, r = keys.events(task_id), project.redis
    deadline = time.monotonic() + timeout
    while True:  # read_after waits a slice at a time
        found = streams.read_after(r, key, cursor, deadline, block=timeout > 0)
        if found or time.monotonic() >= deadline:
            break
    entries = found[0][1] if found else []
    events = []
    for entry_id, fields in entries:
        event = _event(entry_id, fields)
        events.append({"id": entry_id, "kind": event.kind, "iteration": event.iteration,
                       "at": event.at, "data": event.data,
                       "line": describe(task_id, event.kind, event.iteration, event.data)})
    return events, entries[-1][0] if entries else cursor


def watch(project: Project, task_id: str) -> Iterator[tuple[LoopView, Event | None]]:
    """The loop's picture after each event (or tick), until it ends or its orchestrator is
    gone (then `gone` is set): what `cfn loop watch` draws."""
    from cfn.agents import runs

    view = LoopView(task_id)
    for event in follow(project, task_id):  # it ends after the loop's last loop_end
        unseen = event is None and _ended_unseen(project, task_id, len(view.iterations))
        event = event or unseen or None
        view.gone = event is None and _abandoned(project, task_id)
        if event is not None:
            view.apply(event.kind, event.iteration, event.data)
        view.add_runs(runs.with_costs(project.db, task_id))
        yield view, event
        if unseen or view.gone:
            return


def snapshot(project: Project, task_id: str) -> LoopView:
    """The loop's picture now, from every event so far and the recorded runs (what the
    dashboard shows; `watch` follows it as it changes)."""
    from cfn.agents import runs

    view = LoopView(task_id)
    for entry_id, fields in project.redis.xrange(keys.events(task_id)):
        event = _event(entry_id, fields)
        view.apply(event.kind, event.iteration, event.data)
    view.add_runs(runs.with_costs(project.db, task_id))
    return view


def _ended_unseen(project: Project, task_id: str, iterations: int) -> Event | None:
    """The loop's end as its record says, when its stream has none (expired, or another
    Redis): a loop_end event made from the database."""
    ended = store.ended(project.db, task_id)
    if ended is None:
        return None
    status, report = ended
    reason = (report or {}).get("reason") or "as recorded"
    return Event("loop_end", iterations, {"status": status, "reason": reason}, time.time())


def _abandoned(project: Project, task_id: str) -> bool:
    status = store.status(project.db, task_id)
    return status is not None and status["status"] == "running" and \
        not project.loop_orchestrated(task_id)
