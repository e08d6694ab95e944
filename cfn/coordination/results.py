"""Agent reports and quorum collection.

`report` appends to the task's results stream; `collect` waits until the
expected number of agents reported (or the timeout) and reads without
consuming, so any number of readers see the same results. A report without a
confidence has none: it never counts towards the mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from cfn import keys, validate
from cfn.coordination import streams
from cfn.ids import validate_id

if TYPE_CHECKING:
    import redis

STATUSES = ("success", "failure")


@dataclass(frozen=True)
class Report:
    entry_id: str  # the stream entry: identifies this report for durable records
    agent_id: str
    status: str
    confidence: float | None
    result: object | None
    reported_at: float


def signature(key: str, task_id: str, fields: dict[str, str]) -> str:
    """What proves a report came from the holder of `key` (an agent's own token, which only
    it and its supervisor know): HMAC-SHA256 over the task and every field but the proof."""
    import hashlib
    import hmac

    message = "\n".join([task_id, *(f"{k}={fields[k]}" for k in sorted(fields) if k != "sig")])
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()


def latest_signed(r: redis.Redis, task_id: str, agent_id: str, key: str) -> Report | None:
    """The agent's latest report signed with `key` (its own token); reports in its name
    that anyone else wrote are passed over."""
    import hmac

    for entry_id, fields in reversed(r.xrange(keys.results(task_id))):
        if fields.get("agent") == agent_id and hmac.compare_digest(
                fields.get("sig", ""), signature(key, task_id, fields)):
            return _parse(entry_id, fields)
    return None


@dataclass(frozen=True)
class Collection:
    task_id: str
    expected: int
    threshold: float
    quorum: int  # ceil(expected * threshold) successful reports needed
    count: int  # distinct agents that reported
    succeeded: int
    met: bool
    mean_confidence: float | None  # over reports that gave one; None if none did
    timed_out: bool
    results: list[Report]

    def to_dict(self) -> dict:
        return asdict(self)


def report_fields(agent_id: str, *, status: str = "success", confidence: float | None = None,
                  result: object | None = None, max_bytes: int) -> dict[str, str]:
    """A report's stream fields, validated (unsigned)."""
    fields = {
        "agent": validate_id(agent_id, "agent ID"),
        "status": validate.choice(status, STATUSES, "status"),
    }
    if confidence is not None:
        fields["confidence"] = repr(validate.fraction(confidence, "confidence"))
    if result is not None:
        fields["result"] = validate.payload(json.dumps(result), max_bytes, "result")
    return fields


def report(
    r: redis.Redis,
    task_id: str,
    agent_id: str,
    *,
    status: str = "success",
    confidence: float | None = None,
    result: object | None = None,
    ttl: int,
    max_bytes: int,
    signing_key: str | None = None,
) -> str:
    """Record an agent's report; a later report of the same agent replaces it. An agent
    signs its own reports with its token (`signing_key`), so they can be told from
    reports someone else wrote in its name."""
    key = keys.results(task_id)
    fields = report_fields(agent_id, status=status, confidence=confidence, result=result,
                           max_bytes=max_bytes)
    if signing_key:
        fields["sig"] = signature(signing_key, task_id, fields)
    return streams.append(r, key, fields, ttl)


def entry_time(entry_id: str) -> float:
    """When Redis received a stream entry, in Unix seconds (its ID is server milliseconds)."""
    return int(entry_id.split("-", 1)[0]) / 1000


def _parse(entry_id: str, fields: dict[str, str]) -> Report:
    confidence = fields.get("confidence")
    result = fields.get("result")
    try:
        parsed_result = json.loads(result) if result is not None else None
    except ValueError:
        parsed_result = result  # written by another client as plain text: keep it as is
    try:
        parsed_confidence = float(confidence) if confidence not in (None, "") else None
    except ValueError:
        parsed_confidence = None  # unreadable is missing, never a default
    return Report(
        entry_id=entry_id,
        agent_id=fields["agent"],
        status=fields.get("status", "success"),
        confidence=parsed_confidence,
        result=parsed_result,
        reported_at=entry_time(entry_id),
    )


def read(r: redis.Redis, task_id: str) -> list[Report]:
    """Every agent's latest report, sorted by agent, without waiting or consuming."""
    latest, _ = streams.latest_by_agent(r, keys.results(task_id))
    return [_parse(*latest[a]) for a in sorted(latest)]


def collect(
    r: redis.Redis, task_id: str, *, expected: int, threshold: float, timeout: float
) -> Collection:
    """Wait until `expected` agents reported or `timeout` passed, then judge the quorum."""
    key = keys.results(task_id)
    validate.positive_int(expected, "expected")
    validate.fraction(threshold, "threshold")
    timeout = validate.timeout(timeout)
    latest, timed_out = streams.latest_by_agent(r, key, expected=expected, timeout=timeout)
    reports = [_parse(*latest[a]) for a in sorted(latest)]
    return judge(task_id, reports, expected=expected, threshold=threshold, timed_out=timed_out)


def judge(
    task_id: str, reports: list[Report], *, expected: int, threshold: float, timed_out: bool
) -> Collection:
    """The quorum verdict over a set of reports."""
    quorum = math.ceil(expected * threshold - 1e-9)  # 5 * 0.6 is 3.0000000000000004
    succeeded = sum(1 for rep in reports if rep.status == "success")
    confidences = [rep.confidence for rep in reports if rep.confidence is not None]
    return Collection(
        task_id=task_id,
        expected=expected,
        threshold=threshold,
        quorum=quorum,
        count=len(reports),
        succeeded=succeeded,
        met=succeeded >= quorum,
        mean_confidence=sum(confidences) / len(confidences) if confidences else None,
        timed_out=timed_out,
        results=reports,
    )
