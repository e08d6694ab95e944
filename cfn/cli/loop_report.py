"""`cfn loop report` in words: per iteration and agent what ran, where, for how long and at
what cost, and why the gate, the consensus and the decision came out as they did."""

from __future__ import annotations

import json
import time

from cfn.agents.runs import timestamp
from cfn.cli.loop_view import duration, score, usd
from cfn.loop.scoring import GATE_FAILED, plural
from cfn.loop.spec import LoopSpec


def report_lines(found: dict) -> list[str]:
    """The task's history (cfn.history.task_history) as the report's lines."""
    task = found["task"]
    spec = LoopSpec.from_json(task["spec"]) if task["spec"] else None
    decided = {it["iteration"]: it for it in found["iterations"]}
    numbers = sorted({*decided, *(a["iteration"] for a in found["agents"]
                                  if a["iteration"] is not None)})
    cost = sum(a["cost_usd"] or 0 for a in found["agents"])
    lines = [f"Task {task['id']}: {task['status']} ({task['mode']}) after "
             f"{plural(len(decided), 'iteration')}, cost {usd(cost)}, "
             f"updated {_local_time(task['updated_at'])}", f"Epic: {task['epic']}"]
    for number in numbers:
        agents = [a for a in found["agents"] if a["iteration"] == number]
        lines += ["", f"Iteration {number} ({_span(agents)}"
                      f"{'' if number in decided else ', undecided'})"]
        lines += ["  " + _agent_line(agent) for agent in agents]
        if number in decided:
            lines += _verdict_lines(decided[number], spec)
    return lines


def _agent_line(agent: dict) -> str:
    reported = agent["input_tokens"] is not None or agent["output_tokens"] is not None
    tokens = f"{(agent['input_tokens'] or 0) + (agent['output_tokens'] or 0):,} tokens" \
        if reported else "-"
    where = "/".join(p for p in (agent["provider"], agent["model"]) if p) or "-"
    return (f"{agent['phase'] or '-':<12} {agent['agent_id']:<26} {agent['status']:<8} "
            f"{agent['runtime'] or '-':<10} {where:<24} {duration(agent['duration_s']):>7} "
            f"{tokens:>14} {usd(agent['cost_usd']):>7}  confidence {score(agent['confidence'])}")


def _verdict_lines(it: dict, spec: LoopSpec | None) -> list[str]:
    feedback = json.loads(it["feedback"] or "[]")
    gate = f"{_against(it['gate_score'], spec and spec.gate)} passed" if it["gate_passed"] \
        else _gate_failure(it["gate_score"], spec, feedback)
    if it["consensus_score"] is None and not it["gate_passed"]:
        consensus = "- not asked: the validators run only after a passed gate"
    elif it["consensus_score"] is None:
        consensus = "- not reached: too few validators gave a confidence"
    else:
        consensus = (f"{_against(it['consensus_score'], spec and spec.consensus)} "
                     f"{'reached' if it['consensus_passed'] else 'not reached'}")
    return [f"  gate       {gate}", f"  consensus  {consensus}",
            f"  decision   {it['decision']}: {it['reason']}",
            *[f"    feedback: {line}" for line in feedback]]


def _gate_failure(value: float | None, spec: LoopSpec | None, feedback: list[str]) -> str:
    """Why the gate failed, as the loop said it (a quorum missed shows as well as a low
    score), else the score against the threshold."""
    said = next((line[len(GATE_FAILED):] for line in feedback
                 if line.startswith(GATE_FAILED)), None)
    return f"failed: {said}" if said else f"{_against(value, spec and spec.gate)} failed"


def _against(value: float | None, threshold: float | None) -> str:
    """'0.90 >= 0.70', '0.50 < 0.70', or 'no score' (nobody gave one)."""
    if value is None:
        return "no score" + ("" if threshold is None else f" (needs {threshold:.2f})")
    if threshold is None:
        return f"{value:.2f}"
    return f"{value:.2f} {'>=' if value >= threshold else '<'} {threshold:.2f}"


def _span(agents: list[dict]) -> str:
    """How long the iteration took, from its first agent's start to its last one's end."""
    starts = [timestamp(a["started_at"]) for a in agents if a["started_at"]]
    ends = [timestamp(a["finished_at"]) for a in agents if a["finished_at"]]
    if not starts or not ends:
        return "running" if starts else "no agent ran"
    return duration(max(ends) - min(starts))


def _local_time(iso: str | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp(iso))) if iso else "-"
