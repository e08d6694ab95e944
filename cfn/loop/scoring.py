"""The loop's verdicts: gate, consensus and the guard on the product owner's decision.

No score is ever invented: an agent that gave no confidence does not count
towards a mean, and a mean over nobody is None, which never passes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

GATE_FAILED = "gate failed: "  # how the loop's feedback says why the gate failed


def plural(count: int, noun: str) -> str:
    """'1 iteration', '2 iterations'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def quorum(count: int, threshold: float) -> int:
    return math.ceil(count * threshold - 1e-9)


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def confidence(record: dict) -> float | None:
    """The record's confidence if it is a number from 0 to 1; None otherwise, with a logged
    warning: anyone who may write to Redis can have written the record."""
    value = record.get("confidence")
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                         and 0 <= value <= 1):
        return value
    import logging

    logging.getLogger(__name__).warning(
        "cfn: ignored confidence %r of agent %s: not a number from 0 to 1", value,
        record.get("agent_id"))
    return None


def succeeded(records: dict[str, dict]) -> list[dict]:
    return [rec for rec in records.values() if rec.get("status") == "success"]


@dataclass(frozen=True)
class Verdict:
    score: float | None
    passed: bool
    why: str


def gate(records: dict[str, dict], threshold: float,
         test_rate: float | None = None, use_tests: bool = False) -> Verdict:
    """A quorum of implementers succeeded and their mean confidence (or the test pass rate)
    reaches the threshold."""
    ok = succeeded(records)
    needed = quorum(len(records), threshold)
    score = test_rate if use_tests else mean(
        [c for r in ok if (c := confidence(r)) is not None])
    measure = "test pass rate" if use_tests else "mean confidence"
    if len(ok) < needed:
        return Verdict(score, False, f"{len(ok)} of {len(records)} implementers succeeded, "
                                     f"{needed} needed")
    if score is None:
        return Verdict(None, False, f"no {measure}: nobody gave one")
    passed = score >= threshold
    return Verdict(score, passed, f"{measure} {score:.2f} {'>=' if passed else '<'} "
                                  f"{threshold:.2f}")


def consensus(records: dict[str, dict], threshold: float) -> Verdict:
    """The mean validator confidence over a quorum of validators that gave one."""
    confidences = [c for r in succeeded(records) if (c := confidence(r)) is not None]
    needed = quorum(len(records), threshold)
    if len(confidences) < needed or not confidences:
        return Verdict(None, False, f"{len(confidences)} of {len(records)} validators gave a "
                                    f"confidence, {needed} needed")
    score = mean(confidences)
    passed = score >= threshold
    return Verdict(score, passed, f"consensus {score:.2f} {'>=' if passed else '<'} "
                                  f"{threshold:.2f}")


DECISIONS = ("PROCEED", "ITERATE", "ABORT")


def guard_decision(record: dict | None, *, gate_passed: bool, consensus_passed: bool,
                   deliverables: list, missing: list | tuple = ()) -> tuple[str, str]:
    """The product owner's decision as the loop acts on it: errors never become PROCEED,
    and PROCEED needs a passed gate, a reached consensus and deliverables that exist in
    the workspace (`missing`: those reported that do not)."""
    if record is None or record.get("status") != "success":
        why = (record or {}).get("error") or (record or {}).get("status") or "no record"
        return "ITERATE", f"the product owner failed ({why}); not proceeding"
    decision = (record.get("decision") or "").strip().upper()
    if decision not in DECISIONS:
        return "ITERATE", f"the product owner gave no valid decision ({decision or 'none'!r})"
    reason = record.get("reason") or ""
    if decision == "PROCEED":
        lacking = [what for what, ok in (("the gate failed", gate_passed),
                                         ("no consensus", consensus_passed),
                                         ("no deliverables", bool(deliverables))) if not ok]
        if lacking:
            return "ITERATE", f"PROCEED refused: {'; '.join(lacking)}"
        if missing:
            return "ITERATE", ("PROCEED refused: deliverables missing from the workspace: "
                               + ", ".join(map(str, missing)))
    return decision, reason or f"the product owner decided {decision}"


_PYTEST = re.compile(r"(\d+) (passed|failed|error|errors)\b")
_UNITTEST_RAN = re.compile(r"^Ran (\d+) tests?", re.M)
_UNITTEST_BAD = re.compile(r"FAILED \(([^)]*)\)")


def pass_rate(output: str, exit_code: int | None) -> float | None:
    """The share of tests that passed, from pytest's or unittest's summary; else by exit code."""
    counts = {"passed": 0, "failed": 0}
    for number, word in _PYTEST.findall(output):
        counts["passed" if word == "passed" else "failed"] += int(number)
    if sum(counts.values()):
        return counts["passed"] / sum(counts.values())
    ran = _UNITTEST_RAN.findall(output)
    if ran and int(ran[-1]):
        bad = sum(int(n) for n in re.findall(r"=(\d+)", " ".join(_UNITTEST_BAD.findall(output))))
        return (int(ran[-1]) - bad) / int(ran[-1])
    if exit_code is None:
        return None
    return 1.0 if exit_code == 0 else 0.0
