"""Running the CFN Loop, one iteration after another, resumable at any point.

Each iteration: Loop 3 implementers in parallel; the gate; Loop 2 validators
(only after a passed gate); Loop 4, the product owner's decision. Every step
is recorded in SQLite and published in Redis (the seed's keys and an event
stream). Run and resume are the same code: a phase reuses the runs already
recorded for its iteration and spawns only what is missing, so agents that
finished are never run again. A loop that ended keeps its final report
(`ended_report`), which a resume gives back instead of running anything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cfn import defaults, history
from cfn.agents import lifecycle, profiles, runs
from cfn.agents.spawn import SpawnRequest, preflight, spawn
from cfn.coordination import decisions, events
from cfn.db import immediate
from cfn.errors import InvalidInput, NegativeOutcome
from cfn.loop import scoring, store
from cfn.loop.spec import LoopSpec

if TYPE_CHECKING:
    from cfn.project import Project

log = logging.getLogger(__name__)
# the decisions that end a loop: its status and exit code
ENDINGS = {"PROCEED": ("proceeded", 0), "ABORT": ("aborted", 1)}
REPORT_FORMAT = ('End your answer with one line of JSON: {"confidence": 0.0-1.0, '
                 '"deliverables": ["files you changed"], "feedback": "what is missing"}.')


@dataclass
class Iteration:
    number: int
    gate_score: float | None = None
    gate_passed: bool = False
    consensus_score: float | None = None
    consensus_passed: bool = False
    decision: str = "ITERATE"
    reason: str = ""
    feedback: list[str] = field(default_factory=list)
    deliverables: list = field(default_factory=list)


@dataclass
class LoopReport:
    task_id: str
    status: str  # proceeded | aborted | exhausted | over-budget
    exit_code: int
    reason: str
    cost_usd: float
    iterations: list[Iteration]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoopReport:
        return cls(**{**data, "iterations": [Iteration(**it) for it in data["iterations"]]})


class Loop:
    """One task's loop on a project; progress goes to the `cfn.loop.engine` logger."""

    def __init__(self, project: Project, spec: LoopSpec):
        self.project, self.spec = project, spec
        self.profiles = {name: profiles.get(name, project.root) for name in
                         {*spec.loop3_agents, *spec.loop2_agents, spec.product_owner}}
        for name, profile in self.profiles.items():
            if profile.kind == "scripted" and not profile.command:
                raise InvalidInput(f"profile {name} is scripted but has no command; a loop "
                                   "can only run profiles that say what to run")

    # --- the loop --------------------------------------------------------------

    def run(self, *, continuing: bool = False) -> LoopReport:
        """Run the loop to its end, after the iterations already decided (a resume).

        A task whose loop ended runs again only when `continuing`: up to the spec's number
        of iterations more, after the ones it had. Nothing is written before every agent
        passed the checks a spawn makes (InvalidInput otherwise).
        """
        project, task_id = self.project, self.spec.task_id
        ended = store.ended(project.db, task_id)
        if ended is not None and not continuing:
            raise InvalidInput(f"task {task_id}'s loop already ended ({ended[0]}): give another "
                               "--task-id, or add --continue to run more iterations on it")
        self.preflight()
        done = decided_iterations(project, task_id)
        if ended is not None:
            self.spec = replace(self.spec, max_iterations=len(done) + self.spec.iterations,
                                continued_after=len(done))
        with self._heartbeat():
            store.save_task(project.db, self.spec, "running")
            history.publish_pending(project.redis, project.db, task_id, ttl=project.key_ttl)
            return self._iterate(done)

    def _iterate(self, done: list[Iteration]) -> LoopReport:
        feedback = done[-1].feedback if done else []
        self.event("loop_start", len(done) + 1, {"mode": self.spec.mode,
                                                 "gate": self.spec.gate,
                                                 "consensus": self.spec.consensus,
                                                 "iterations": self.spec.iterations,
                                                 "budget_usd": self.spec.budget_usd,
                                                 "epic": self.spec.epic})
        # decided, but died before it ended (not in a round before a --continue)
        if len(done) > (self.spec.continued_after or 0) and done[-1].decision in ENDINGS:
            return self._end(*ENDINGS[done[-1].decision], done[-1].reason, done)
        for number in range(len(done) + 1, self.spec.iterations + 1):
            if self._over_budget():
                return self._end("over-budget", 1, f"budget of {self.spec.budget_usd} USD spent",
                                 done)
            iteration = self.iteration(number, feedback)
            self._record(iteration)
            done.append(iteration)
            if iteration.decision in ENDINGS:
                return self._end(*ENDINGS[iteration.decision], iteration.reason, done)
            feedback = iteration.feedback
        if self._over_budget():
            return self._end("over-budget", 1, f"budget of {self.spec.budget_usd} USD spent", done)
        return self._end("exhausted", 1,
                         f"no PROCEED in {scoring.plural(self.spec.iterations, 'iteration')}",
                         done)

    def preflight(self) -> None:
        """Make every check a spawn of the loop's agents makes, before anything is written."""
        spec = self.spec
        phases = [("l3", spec.loop3_agents, ()), ("l2", spec.loop2_agents, ()),
                  ("po", (spec.product_owner,), ())]
        if spec.test_command:
            phases.append(("tests", ("script",), ("/bin/sh", "-c", spec.test_command)))
        for prefix, names, command in phases:
            for agent_id, name in agent_ids(prefix, names).items():
                preflight(self.project, self._request(agent_id, name, "check", command))

    @contextlib.contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Beat `coord:{T}:orchestrator` while the loop runs; gone at once when it ends or
        is interrupted, so `cfn loop status` can tell a driven loop from an abandoned one.
        One orchestrator per task: a second is refused (NegativeOutcome) while the first
        lives, wherever it was started (CLI, portal, MCP)."""
        from cfn.project import Project

        task_id = self.spec.task_id
        state = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time()}
        stopped = threading.Event()
        # a connection of its own: a beat never waits behind the loop's blocking reads, and
        # the loop's connections stay as many as they were
        beating = Project(self.project.config)
        r = beating.redis

        def beat() -> None:
            while not stopped.wait(defaults.HEARTBEAT_EVERY_S):
                try:
                    events.beat(r, task_id, state)
                except Exception as exc:  # an outage: the loop's own calls ride it out
                    log.debug("orchestrator heartbeat failed: %s", exc)

        if not events.claim_orchestrator(r, task_id, state, dead=lambda b: not _beating(b)):
            beating.close()
            raise NegativeOutcome(f"a loop already runs for task {task_id}; follow it with "
                                  f"`cfn loop watch {task_id}`")
        beater = threading.Thread(target=beat, name="cfn-orchestrator-heartbeat", daemon=True)
        beater.start()
        try:
            yield
        finally:
            stopped.set()
            beater.join(timeout=5)  # a beat stuck in an outage must not hold the loop
            with contextlib.suppress(Exception):  # a Redis gone: the key expires on its own
                events.stop_beating(r, task_id)
            beating.close()

    def iteration(self, number: int, feedback: list[str]) -> Iteration:
        spec, it = self.spec, Iteration(number)
        log.info(f"[{spec.task_id} #{number}] loop 3: {', '.join(spec.loop3_agents)}")
        built = self.phase(number, "loop3", "l3", spec.loop3_agents,
                           self._implementer_prompt(feedback))
        it.deliverables = sorted({str(d) for rec in built.values()
                                  for d in rec.get("deliverables") or ()})
        verdict = scoring.gate(built, spec.gate, *self._test_rate(number))
        it.gate_score, it.gate_passed = verdict.score, verdict.passed
        log.info(f"[{spec.task_id} #{number}] gate: {verdict.why} -> "
                 f"{'passed' if verdict.passed else 'failed'}")
        self.event("gate", number, asdict(verdict))
        if verdict.passed:
            events.start_loop2(self.project.redis, spec.task_id, number,
                               len(spec.loop2_agents), ttl=self.project.key_ttl)
            checked = self.phase(number, "loop2", "l2", spec.loop2_agents,
                                 self._validator_prompt(it.deliverables))
            agreement = scoring.consensus(checked, spec.consensus)
            it.consensus_score, it.consensus_passed = agreement.score, agreement.passed
            it.feedback = [f"{a}: {rec['feedback']}" for a, rec in checked.items()
                           if rec.get("feedback")]
            log.info(f"[{spec.task_id} #{number}] consensus: {agreement.why} -> "
                     f"{'reached' if agreement.passed else 'not reached'}")
            self.event("consensus", number, asdict(agreement))
        else:
            it.feedback = [scoring.GATE_FAILED + verdict.why] + [
                f"{a}: {rec.get('error') or rec.get('feedback')}" for a, rec in built.items()
                if rec.get("status") != "success" or rec.get("feedback")]
        it.decision, it.reason = self.decide(number, it)
        log.info(f"[{spec.task_id} #{number}] decision: {it.decision} ({it.reason})")
        return it

    def decide(self, number: int, it: Iteration) -> tuple[str, str]:
        facts = {"gate_passed": it.gate_passed, "gate_score": it.gate_score,
                 "consensus_passed": it.consensus_passed, "consensus_score": it.consensus_score,
                 "deliverables": it.deliverables, "feedback": it.feedback}
        prompt = (f"Epic: {self.spec.epic}\nIteration {number} of at most "
                  f"{self.spec.iterations}.\nFacts: {json.dumps(facts)}\nDecide PROCEED, "
                  'ITERATE or ABORT. End with one line of JSON: {"decision": "...", '
                  '"reason": "..."}.')
        records_ = self.phase(number, "loop4", "po", (self.spec.product_owner,), prompt)
        return scoring.guard_decision(next(iter(records_.values()), None),
                                      gate_passed=it.gate_passed,
                                      consensus_passed=it.consensus_passed,
                                      deliverables=it.deliverables,
                                      missing=self._missing(it.deliverables))

    def _missing(self, deliverables: list) -> list:
        """Reported deliverables that are not in the workspace (an agent's word is checked)."""
        workspace = Path(self.spec.workspace or self.project.root).resolve()
        missing = []
        for item in deliverables:
            path = (workspace / str(item)).resolve()
            if not path.is_relative_to(workspace) or not path.exists():
                missing.append(item)
        return missing

    # --- agents ------------------------------------------------------------------

    def phase(self, number: int, phase: str, prefix: str, profile_names, prompt: str,
              command: tuple[str, ...] = ()) -> dict[str, dict]:
        """Each agent's completion record, spawning only the runs this iteration lacks."""
        run_ids = {agent_id: self._run_for(number, phase, agent_id, name, prompt, command)
                   for agent_id, name in agent_ids(prefix, profile_names).items()}
        timeout = max(self.profiles.get(n, profiles.get("script")).timeout
                      for n in profile_names) + defaults.LOOP_WAIT_MARGIN_S
        for agent, run_id in run_ids.items():
            self.event("agent_start", number, {"agent": agent, "phase": phase,
                                               "run_id": run_id})

        def report(agent: str, record: dict) -> None:
            confidence = scoring.confidence(record)
            log.info(f"[{self.spec.task_id} #{number}]   {agent}: {record.get('status')}"
                     f"{'' if confidence is None else f' (confidence {confidence:.2f})'}")
            self.event("agent_done", number, {"agent": agent, "phase": phase,
                                              "run_id": run_ids.get(agent),
                                              "status": record.get("status"),
                                              "confidence": confidence})

        waited = lifecycle.wait(self.project, self.spec.task_id, run_ids, timeout=timeout,
                                phase=phase, on_record=report)
        return {agent: waited.records.get(agent, {"status": "timeout",
                                                  "error": "no completion record in time"})
                for agent in run_ids}

    def _run_for(self, number, phase, agent_id, profile, prompt, command) -> int:
        row = runs.latest(self.project.db, self.spec.task_id, agent_id, iteration=number)
        if row is not None and row["status"] != "lost":
            return row["id"]  # finished or still running: never run it again
        request = replace(self._request(agent_id, profile, prompt, command), phase=phase,
                          iteration=number)
        return spawn(self.project, request).run_id

    def _request(self, agent_id: str, profile: str, prompt: str,
                 command: tuple[str, ...]) -> SpawnRequest:
        spec = self.spec
        return SpawnRequest(
            agent_id=agent_id, task_id=spec.task_id, profile=profile, runtime=spec.runtime,
            prompt=prompt, command=command, image=spec.image, network=spec.network,
            workspace=Path(spec.workspace) if spec.workspace else None)

    def _test_rate(self, number: int) -> tuple[float | None, bool]:
        if not self.spec.test_command:
            return None, False
        records_ = self.phase(number, "loop3-tests", "tests", ("script",), "run the tests",
                              ("/bin/sh", "-c", self.spec.test_command))
        record = next(iter(records_.values()))
        output = Path(record["log_path"]).read_text(errors="replace") \
            if record.get("log_path") and Path(record["log_path"]).exists() else ""
        return scoring.pass_rate(output, record.get("exit_code")), True

    # --- prompts -------------------------------------------------------------------

    def _implementer_prompt(self, feedback: list[str]) -> str:
        lines = [f"Epic: {self.spec.epic}",
                 f"Success criteria: the work passes review with consensus >= "
                 f"{self.spec.consensus:.2f} and your confidence >= {self.spec.gate:.2f}."]
        if feedback:
            lines += ["Feedback from the previous iteration:", *[f"- {f}" for f in feedback]]
        return "\n".join([*lines, REPORT_FORMAT])

    def _validator_prompt(self, deliverables: list) -> str:
        return (f"Epic: {self.spec.epic}\nDeliverables to validate: "
                f"{', '.join(map(str, deliverables)) or 'none reported'}\n"
                f"Judge them; your confidence is how sure you are they meet the epic.\n"
                f"{REPORT_FORMAT}")

    # --- records ---------------------------------------------------------------------

    def event(self, kind: str, number: int, data: dict) -> None:
        events.append(self.project.redis, self.spec.task_id, kind, number, data,
                      ttl=self.project.key_ttl)

    def _record(self, it: Iteration) -> None:
        """The iteration and its decision in one transaction (a resume never finds one
        without the other), then the decision published from that record."""
        project = self.project
        with immediate(project.db):
            store.record_iteration(
                project.db, self.spec.task_id, it.number, gate_score=it.gate_score,
                gate_passed=it.gate_passed, consensus_score=it.consensus_score,
                consensus_passed=it.consensus_passed, decision=it.decision,
                feedback=it.feedback, reason=it.reason)
            history.record_decision(project.db, decisions.Decision(
                self.spec.task_id, it.decision, it.number, f"po-{self.spec.product_owner}",
                None, it.reason))
        history.publish_pending(project.redis, project.db, self.spec.task_id,
                                ttl=project.key_ttl)
        self.event("decision", it.number, {"decision": it.decision, "reason": it.reason,
                                           "cost_usd": self._cost()})

    def _cost(self) -> float:
        return runs.total_cost(self.project.db, self.spec.task_id)

    def _over_budget(self) -> bool:
        return self.spec.budget_usd is not None and self._cost() >= self.spec.budget_usd

    def _end(self, status: str, code: int, reason: str, done: list[Iteration]) -> LoopReport:
        report = LoopReport(self.spec.task_id, status, code, reason, self._cost(), done)
        store.save_task(self.project.db, self.spec, status, report.to_dict())
        self.event("loop_end", len(done), {"status": status, "reason": reason})
        log.info(f"[{self.spec.task_id}] {status}: {reason}")
        return report


def ended_report(project: Project, task_id: str) -> LoopReport | None:
    """The final report of the task's loop if it ended, else None; rebuilt from the records
    for a loop that ended before cfn kept reports."""
    found = store.ended(project.db, task_id)
    if found is None:
        return None
    status, stored = found
    if stored is not None:
        return LoopReport.from_dict(stored)
    done = decided_iterations(project, task_id)
    return LoopReport(task_id, status, 0 if status == "proceeded" else 1,
                      done[-1].reason if done else "", runs.total_cost(project.db, task_id), done)


def decided_iterations(project: Project, task_id: str) -> list[Iteration]:
    """The task's iterations that reached a decision, as recorded."""
    return [Iteration(row["iteration"], row["gate_score"], bool(row["gate_passed"]),
                      row["consensus_score"], bool(row["consensus_passed"]), row["decision"],
                      row["reason"] or "", row["feedback"])
            for row in store.decided_iterations(project.db, task_id)]


def agent_ids(prefix: str, profile_names) -> dict[str, str]:
    """The agent ID of each profile in a phase (agent ID -> profile): l3-coder-1, po-NAME."""
    return {(f"{prefix}-{name}-{index}" if prefix != "po" else f"po-{name}"): name
            for index, name in enumerate(profile_names, 1)}


def orchestrator_alive(project: Project, task_id: str) -> bool:
    """Whether a process drives the task's loop: its heartbeat is there, and when it beat
    from this machine, its process lives (a killed one is noticed at once, not in 10 s)."""
    beat = events.orchestrator(project.redis, task_id)
    return beat is not None and _beating(beat)


def _beating(beat: dict) -> bool:
    """Whether the process of a heartbeat lives (one of another machine: while it beats)."""
    if beat.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(beat["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True
