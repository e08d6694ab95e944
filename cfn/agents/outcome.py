"""What an agent's output says: confidence, deliverables, tokens, cost, provider errors.

Claude Code headless prints a stream of JSON events, one a line (`--output-format
stream-json`), that ends with its `result` event (with `--output-format json`, that event
alone); scripted agents may print a JSON object as their last line. Values an agent did
not give stay None, and a Claude agent without a result event failed.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

_PROVIDER_TEXT = re.compile(r"\b(429|5\d\d)\b|overloaded|rate.?limit", re.I)
_TAIL_BYTES = 256 * 1024
_SHOWN_CHARS = 300  # of an output that cannot be judged: the whole of it stays in the log


@dataclass
class Outcome:
    status: str  # success | failure | timeout | killed | stopped | lost
    exit_code: int | None = None
    confidence: float | None = None
    deliverables: list | None = None
    feedback: str | None = None
    decision: str | None = None  # a product owner's PROCEED / ITERATE / ABORT, as it gave it
    reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    provider_error: str | None = None  # why the provider failed (429, 529, 5xx), when it did
    key_refused: bool = False  # the provider answered 401/403: its key is the problem
    error: str | None = None
    sandbox: str | None = None  # the run's sandbox mode, when one was asked for

    def to_dict(self) -> dict:
        return asdict(self)


def _json_objects_from_end(text: str):
    """JSON objects in `text`, the last one first."""
    decoder = json.JSONDecoder()
    position = len(text)
    while (position := text.rfind("{", 0, position)) != -1:
        try:
            value, _ = decoder.raw_decode(text, position)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def _json_lines_from_end(output: str):
    """The lines of output that are JSON objects, the last one first."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                yield value


def _last_json_line(output: str) -> dict:
    """The last line of output that is a JSON object (a script's report)."""
    return next(_json_lines_from_end(output), {})


def result_event(output: str) -> dict:
    """Claude Code's result event: the last JSON line of type "result" ({} if none)."""
    return next((event for event in _json_lines_from_end(output)
                 if event.get("type") == "result"), {})


def _confidence(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return None  # absent or nonsense: missing, never a default


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _agent_report(document: dict) -> dict:
    """The {"confidence", "deliverables", "feedback"} object an agent ended with, if any."""
    for candidate in (document, *_json_objects_from_end(str(document.get("result", "")))):
        if any(k in candidate for k in ("confidence", "deliverables", "feedback", "decision")):
            return candidate
    return {}


def _denials(document: dict) -> list[str]:
    """The tool uses Claude Code refused (permission_denials), shortly described."""
    said = []
    for denial in document.get("permission_denials") or ():
        if isinstance(denial, dict):
            tool_input = denial.get("tool_input") or {}
            detail = tool_input.get("command") or tool_input.get("file_path") or ""
            said.append(f"{denial.get('tool_name', '?')}({str(detail)[:80]})")
    return said


def read_log_tail(path) -> str:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - _TAIL_BYTES))
        return handle.read().decode(errors="replace")


def parse(output: str, exit_code: int | None, *, claude_agent: bool = False,
          report_required: bool = True) -> Outcome:
    """Judge a finished agent from its exit code and output. A `claude_agent`'s report is
    its result event; without one it failed, whatever its exit code. Unless
    `report_required`, a result that is not an error is a success without the JSON report
    line (its answer is free text)."""
    document = result_event(output) if claude_agent else _last_json_line(output)
    if claude_agent and not document:
        return Outcome(status="failure", exit_code=exit_code, error=(
            f"no result event in Claude Code's output (exit code {exit_code}); it ended with: "
            f"{output.strip()[-_SHOWN_CHARS:] or '(nothing)'}"))
    claude = document.get("type") == "result"
    is_error = bool(document.get("is_error")) if claude else False
    ok = exit_code == 0 and not is_error
    report = _agent_report(document)
    usage = document.get("usage") or {}
    deliverables = report.get("deliverables")
    outcome = Outcome(
        status="success" if ok else "failure",
        exit_code=exit_code,
        confidence=_confidence(report.get("confidence")),
        deliverables=deliverables if isinstance(deliverables, list) else None,
        feedback=_text(report.get("feedback")),
        decision=_text(report.get("decision")),
        reason=_text(report.get("reason")),
        input_tokens=usage.get("input_tokens") if claude else None,
        output_tokens=usage.get("output_tokens") if claude else None,
        cost_usd=document.get("total_cost_usd") if claude else None,
    )
    denied = _denials(document) if claude else []
    if denied and ok:  # it could not do what it set out to do: never a plain success
        outcome.status = "failure"
        outcome.error = f"tools were denied to the agent: {'; '.join(denied)}"
    elif claude and ok and not report and report_required:
        outcome.status = "failure"
        outcome.error = ("no report: the agent's answer did not end with its JSON line "
                         '({"confidence": ..., "deliverables": [...], "feedback": ...})')
    if claude and is_error:
        outcome.error = str(document.get("result", ""))[:500]
        status = document.get("api_error_status")
        outcome.key_refused = status in (401, 403)
        if (isinstance(status, int) and (status == 429 or status >= 500)) or (
                status is None and _PROVIDER_TEXT.search(outcome.error or "")):
            outcome.provider_error = outcome.error
    elif not ok:
        outcome.error = f"exited with {exit_code}"
    return outcome


# what a tool's output says when the sandbox refused it: a read-only or hidden path, no
# network (errno names as Node and Bun print them, messages as libc and curl do)
_REFUSED = re.compile(
    r"read-only file system|\bEROFS\b|permission denied|\bEACCES\b|operation not permitted|"
    r"network is unreachable|\bENETUNREACH\b|could not resolve host|"
    r"temporary failure in name resolution|\bEAI_AGAIN\b|connection refused|\bECONNREFUSED\b",
    re.I)
_INPUT_CHARS = 200


def _tool_uses(events: list[dict]) -> dict[str, tuple[str, str]]:
    """The assistant's tool uses by ID: (tool, its command, path or URL shortly)."""
    found = {}
    for event in events:
        if event.get("type") != "assistant":
            continue
        for block in _blocks(event):
            if block.get("type") == "tool_use":
                given = block.get("input") if isinstance(block.get("input"), dict) else {}
                detail = next((given[k] for k in ("command", "file_path", "path", "url",
                                                  "pattern") if k in given), "")
                found[block.get("id")] = (str(block.get("name", "?")),
                                          str(detail)[:_INPUT_CHARS])
    return found


def _blocks(event: dict) -> list[dict]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _result_text(content) -> str:
    """A tool result's text: a string, or text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def sandbox_violations(log_text: str) -> list[dict]:
    """The tool results in a Claude Code stream-json log that show the sandbox refusing:
    each as {"tool", "input" (its command or path, shortened), "error" (the first line that
    says so)}, in the order they happened."""
    events = [e for e in map(_json_line, log_text.splitlines()) if e]
    uses = _tool_uses(events)
    found = []
    for event in events:
        if event.get("type") != "user":
            continue
        for block in _blocks(event):
            if block.get("type") != "tool_result":
                continue
            tool, given = uses.get(block.get("tool_use_id"), ("?", ""))
            refused = next((line for line in _result_text(block.get("content")).splitlines()
                            if _REFUSED.search(line)), None)
            if refused is not None:  # its first such line: a `find /` refused a thousand times
                found.append({"tool": tool, "input": given,
                              "error": refused.strip()[:_SHOWN_CHARS]})
    return found


def _json_line(line: str) -> dict | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
