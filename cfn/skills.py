"""The skills registry: which skill files exist, their content hash, and who approved them.

A skill whose content changes goes back to `pending`. Decisions are appended
to approval_history together with the status change, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from cfn import validate
from cfn.db import immediate
from cfn.errors import InvalidInput, NegativeOutcome
from cfn.ids import validate_id

# decision -> the status it gives the skill
DECISIONS = {"approve": "approved", "reject": "rejected", "escalate": "escalated"}


@dataclass(frozen=True)
class Rule:
    """Automatic review: approve low risk with high coverage, escalate high risk."""

    approve_risk: float = 0.30
    approve_coverage: float = 0.95
    escalate_risk: float = 0.60

    def judge(self, risk: float, coverage: float) -> tuple[str, str]:
        """(decision, why). `review` means a person must decide."""
        if risk > self.escalate_risk:
            return "escalate", f"risk {risk:g} above {self.escalate_risk:g}"
        if risk <= self.approve_risk and coverage >= self.approve_coverage:
            return "approve", (f"risk {risk:g} <= {self.approve_risk:g} and coverage "
                               f"{coverage:g} >= {self.approve_coverage:g}")
        return "review", (f"risk {risk:g} / coverage {coverage:g} is neither auto-approved "
                          f"(risk <= {self.approve_risk:g}, coverage >= "
                          f"{self.approve_coverage:g}) nor escalated (risk > "
                          f"{self.escalate_risk:g})")


def content_hash(path: Path) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    if path.is_file():
        digest.update(path.read_bytes())
        return digest.hexdigest()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode() + b"\0" + item.read_bytes() + b"\0")
    return digest.hexdigest()


def _skill(db: Database, name: str) -> dict:
    row = next(db.query("SELECT * FROM skills WHERE name = ?", [validate_id(name, "skill name")]),
               None)
    if row is None:
        raise NegativeOutcome(f"no skill named {name!r}; add it with `cfn skills add PATH`")
    return row


def _log(db: Database, skill_id: int, decision: str, agent_id: str | None,
         confidence: float | None, metadata: dict) -> None:
    db.execute(
        "INSERT INTO approval_history (skill_id, agent_id, decision, confidence, metadata)"
        " VALUES (?, ?, ?, ?, ?)",
        [skill_id, agent_id, decision, confidence, json.dumps(metadata)],
    )


def add(db: Database, path: Path, name: str | None = None) -> tuple[dict, str]:
    """Register a skill file or directory; returns (skill, 'added'|'changed'|'unchanged')."""
    path = path.resolve()
    if not path.exists():
        raise InvalidInput(f"{path} does not exist; give the skill's file or directory")
    name = validate_id(name or (path.stem if path.is_file() else path.name), "skill name")
    digest = content_hash(path)
    with immediate(db):
        row = next(db.query("SELECT * FROM skills WHERE name = ?", [name]), None)
        if row is None:
            db.execute("INSERT INTO skills (name, content_hash, content_path) VALUES (?, ?, ?)",
                       [name, digest, str(path)])
            change = "added"
        elif row["content_hash"] == digest and row["content_path"] == str(path):
            return row, "unchanged"
        else:
            db.execute(
                "UPDATE skills SET content_hash = ?, content_path = ?, status = 'pending',"
                " updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
                [digest, str(path), row["id"]],
            )
            change = "changed"
        skill = _skill(db, name)
        _log(db, skill["id"], change, None, None, {"content_hash": digest, "path": str(path)})
    return skill, change


def list_skills(db: Database, status: str | None = None) -> list[dict]:
    if status is None:
        return list(db.query("SELECT * FROM skills ORDER BY name"))
    return list(db.query("SELECT * FROM skills WHERE status = ? ORDER BY name", [status]))


def decide(db: Database, name: str, decision: str, *, agent_id: str, confidence: float,
           note: str | None = None, extra: dict | None = None) -> dict:
    """Approve, reject or escalate a skill; returns the updated skill."""
    validate.choice(decision, tuple(DECISIONS), "decision")
    validate_id(agent_id, "agent ID")
    validate.fraction(confidence, "confidence")
    return _apply(db, name, decision, agent_id, confidence, {"note": note, **(extra or {})})


def evaluate(db: Database, name: str, *, risk: float, coverage: float, rule: Rule,
             agent_id: str | None = None) -> tuple[dict, str, str]:
    """Apply the automatic rule; returns (skill, decision, why)."""
    validate.fraction(risk, "risk")
    validate.fraction(coverage, "coverage")
    if agent_id is not None:
        validate_id(agent_id, "agent ID")
    decision, why = rule.judge(risk, coverage)
    metadata = {"rule": why, "risk": risk, "coverage": coverage}
    return _apply(db, name, decision, agent_id, None, metadata), decision, why


def _apply(db: Database, name: str, decision: str, agent_id: str | None,
           confidence: float | None, metadata: dict) -> dict:
    with immediate(db):
        skill = _skill(db, name)
        if decision in DECISIONS:
            db.execute(
                "UPDATE skills SET status = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
                " WHERE id = ?",
                [DECISIONS[decision], skill["id"]],
            )
        _log(db, skill["id"], decision, agent_id, confidence,
             {**metadata, "content_hash": skill["content_hash"]})
        return _skill(db, name)


def history(db: Database, name: str) -> list[dict]:
    """The skill's approval history, oldest first."""
    skill = _skill(db, name)
    rows = list(db.query("SELECT * FROM approval_history WHERE skill_id = ? ORDER BY id",
                         [skill["id"]]))
    for row in rows:
        row["metadata"] = json.loads(row["metadata"]) if row["metadata"] else None
    return rows
