"""Agent reports and quorum collection.

`report` appends to the task's results stream; `collect` waits until the
expected number of agents reported (or the timeout) and reads without
consuming, so any number of readers see the same results. A report without a
confidence has none: it never counts towards the mean. Anyone may write the stream (e.g.
with redis-cli), so readers ignore, with a logged warning, a report whose confidence is
not a number from 0 to 1: it counts as if it had never been written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
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
            parsed = _parse(task_id, entry_id, fields)
            if parsed is not None:
                return parsed
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


def _confidence(text: str | None) -> float | None:
    """A stored confidence; None if the report gave none. ValueError unless it is a number
    from 0 to 1 (nan, inf, 7 and -1 are not)."""
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ValueError(f"its confidence {text!r} is not a number from 0 to 1")
    return value


def _result(text: str | None) -> object | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text  # written by another client as plain text (or too deep): kept as is


def _parse(task_id: str, entry_id: str, fields: dict[str, str]) -> Report | None:
    """The report in a stream entry; None, with a warning saying why, if no reader may
    trust it."""
    try:
        confidence = _confidence(fields.get("confidence"))
    except ValueError as exc:
        import logging  # here: the hot commands never need it

        logging.getLogger(__name__).warning(
            "cfn: ignored report %s of agent %s in %s: %s", entry_id, fields.get("agent"),
            keys.results(task_id), exc)
        return None
    return Report(
        entry_id=entry_id,
        agent_id=fields["agent"],
        status=fields.get("status", "success"),
        confidence=confidence,
        result=_result(fields.get("result")),
        reported_at=entry_time(entry_id),
    )


# hears of each trusted report as a wait reads it, with how many agents have reported so far
OnReport = Callable[[Report, int], None]


def _latest(r: redis.Redis, task_id: str, on_report: OnReport | None = None,
            **wait) -> tuple[list[Report], bool]:
    """Each agent's latest report that can be trusted, sorted by agent (one that cannot is
    skipped, with a warning, as if never written), and whether the wait timed out."""
    def trusted(entry_id: str, fields: dict[str, str]) -> bool:
        return _parse(task_id, entry_id, fields) is not None

    def heard(entry_id: str, fields: dict[str, str], count: int) -> None:
        on_report(_parse(task_id, entry_id, fields), count)

    latest, timed_out = streams.latest_by_agent(r, keys.results(task_id), keep=trusted,
                                                on_entry=heard if on_report else None,
                                                **wait)
    return [_parse(task_id, *latest[agent]) for agent in sorted(latest)], timed_out


def read(r: redis.Redis, task_id: str) -> list[Report]:
    """Every agent's latest report, sorted by agent, without waiting or consuming."""
    return _latest(r, task_id)[0]


def collect(
    r: redis.Redis, task_id: str, *, expected: int, threshold: float, timeout: float,
    on_report: OnReport | None = None,
) -> Collection:
    """Wait until `expected` agents reported or `timeout` passed, then judge the quorum.
    `on_report(report, agents so far)` hears of each report as it arrives."""
    validate.positive_int(expected, "expected")
    validate.fraction(threshold, "threshold")
    timeout = validate.timeout(timeout)
    reports, timed_out = _latest(r, task_id, on_report, expected=expected, timeout=timeout)
    return judge(task_id, reports, expected=expected, threshold=threshold, timed_out=timed_out)


def quorum_of(expected: int, threshold: float) -> int:
    """Successful reports needed: ceil(expected * threshold)."""
    return math.ceil(expected * threshold - 1e-9)  # 5 * 0.6 is 3.0000000000000004


def judge(
    task_id: str, reports: list[Report], *, expected: int, threshold: float, timed_out: bool
) -> Collection:
    """The quorum verdict over a set of reports."""
    quorum = quorum_of(expected, threshold)
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
