"""The headless executor: a worker's prompt, run by Claude Code as an agent of the project's
supervisor, and its answer judged by the worker's output format.

The run goes through the same path as every agent (cfn.agents.spawn): stdin closed, the
worker's model through routing, its sandbox enforced by the runtime, a timeout that ends
the process group, tokens and cost in the ledger. What the daemon adds is the prompt (the
worker's template over the context its patterns select) and the judgement of the answer:
a worker that expects JSON and gets none failed, with the raw answer kept.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cfn.agents.profiles import Profile
from cfn.daemon import context

if TYPE_CHECKING:
    from cfn.daemon.workers import Worker
    from cfn.project import Project

INSTRUCTIONS = ("You are a background worker analysing a codebase for its team. Answer the "
                "request exactly in the format it asks for, and nothing else.")
# the prompt is one argv element of `claude -p`: Linux takes at most 128 KiB there
MAX_PROMPT_BYTES = 120 * 1024
WAIT_MARGIN_S = 60.0  # the supervisor ends the run at its timeout; this is a backstop
_CONTEXT_BLOCK = """

## Codebase Context

{{ context or "No context files provided." }}
"""


@dataclass
class Answer:
    status: str  # success | failure
    result: object | None = None  # the parsed answer (a JSON value, or the text)
    output: str = ""  # the raw answer
    reason: str | None = None
    run_id: int | None = None
    violations: list = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


def claude_path() -> str | None:
    """Where Claude Code is on this machine (the process runtime needs it here)."""
    return shutil.which("claude")


def profile_for(worker: Worker) -> Profile:
    """The agent profile a worker runs as: its model (on Anthropic; other providers run
    their own), tools, limits and timeout."""
    return Profile(id=f"worker-{worker.name}", name=f"{worker.name} worker", kind="claude",
                   provider="anthropic", model=worker.model, timeout=worker.timeout,
                   max_tokens=worker.max_output_tokens, tools=worker.tools,
                   instructions=INSTRUCTIONS, source=worker.source or "workers")


def prompt_for(project: Project, worker: Worker) -> str:
    """The worker's template rendered over its context (secret-looking values masked: the
    prompt goes to the provider, and into an argv)."""
    import jinja2

    found = context.build(project.root, worker.context_patterns, max_files=worker.max_files,
                          max_chars=worker.max_chars_per_file,
                          cache_dir=cache_dir(project))
    template = worker.prompt
    if "context" not in template:  # the seed's layout: the request, then the codebase
        template += _CONTEXT_BLOCK
    values = {"files": [f.path for f in found.files], "project": project.root.name,
              "worker": worker.name, "format": worker.output_format}
    if "recent_changes" in template:
        values["recent_changes"] = context.recent_changes(project.root)
    render = jinja2.Environment(keep_trailing_newline=True).from_string(template).render
    text = context.redact(found.text)
    prompt = render(context=text, **values)
    while len(prompt.encode()) > MAX_PROMPT_BYTES and text:  # the context gives way
        text = text[: len(text) * 3 // 4]
        prompt = render(context=text + "\n[context cut to fit]", **values)
    return prompt


def run(project: Project, worker: Worker, *, job_id: str, runtime: str) -> Answer:
    """Run `worker` headless and judge its answer."""
    from cfn.agents import lifecycle
    from cfn.agents import outcome as outcomes
    from cfn.agents.spawn import SpawnRequest, spawn

    task_id, agent_id = f"daemon-{worker.name}", f"{worker.name}-{job_id[:12]}"
    spawned = spawn(project, SpawnRequest(
        agent_id=agent_id, task_id=task_id, runtime=runtime, timeout=worker.timeout,
        prompt=prompt_for(project, worker), profile_object=profile_for(worker),
        sandbox_mode=worker.sandbox, report_required=False))
    waited = lifecycle.wait(project, task_id, {agent_id: spawned.run_id},
                            timeout=worker.timeout + WAIT_MARGIN_S)
    if waited.timed_out:
        lifecycle.stop(project, task_id, agent_id)
        return Answer("failure", reason="the run outlived its timeout and was stopped",
                      run_id=spawned.run_id)
    record = waited.records[agent_id]
    log = outcomes.read_log_tail(record.get("log_path") or spawned.log_path)
    answer = judge(worker.output_format, record, outcomes.result_event(log))
    answer.violations = outcomes.sandbox_violations(log)
    return answer


def judge(output_format: str, record: dict, event: dict) -> Answer:
    """The run's answer per the worker's format; never an invented result."""
    raw = event.get("result") if isinstance(event.get("result"), str) else ""
    answer = Answer("failure", output=raw, run_id=record.get("run_id"),
                    input_tokens=record.get("input_tokens"),
                    output_tokens=record.get("output_tokens"), cost_usd=record.get("cost_usd"))
    if record.get("status") != "success":
        answer.reason = record.get("error") or f"the run ended {record.get('status')}"
    elif not raw.strip():
        answer.reason = "the answer was empty"
    elif output_format == "json":
        answer.result = first_json(raw)
        if answer.result is None:
            answer.reason = "expected a JSON answer and found none (the raw answer is kept)"
    else:
        answer.result = raw
    if answer.reason is None:
        answer.status = "success"
    return answer


def first_json(text: str) -> object | None:
    """The JSON object or array an answer holds: the whole text, a ```json block, or the
    first value that parses; None when there is none."""
    decoder = json.JSONDecoder()
    stripped = text.strip()
    if "```" in stripped:
        fenced = stripped.split("```")[1::2]
        candidates = [block.removeprefix("json").strip() for block in fenced]
    else:
        candidates = []
    for candidate in (stripped, *candidates):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, (dict, list)):
            return value
    for start, char in enumerate(stripped):
        if char in "{[":
            try:
                value, _ = decoder.raw_decode(stripped, start)
            except ValueError:
                continue
            return value
    return None


def cache_dir(project: Project) -> Path:
    return project.home / "daemon" / "cache"
