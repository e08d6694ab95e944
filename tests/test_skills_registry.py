import json
import subprocess
import sys

import pytest

from cfn import skills
from cfn.db import open_db
from cfn.errors import InvalidInput, NegativeOutcome

RULE = skills.Rule()


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / ".cfn")


@pytest.fixture
def skill_file(tmp_path):
    path = tmp_path / "deploy.sh"
    path.write_text("#!/bin/sh\necho deploy\n")
    return path


def test_add_records_hash_and_resets_status_when_content_changes(db, skill_file):
    skill, change = skills.add(db, skill_file)
    assert (change, skill["name"], skill["status"]) == ("added", "deploy", "pending")
    assert skills.add(db, skill_file)[1] == "unchanged"
    skills.decide(db, "deploy", "approve", agent_id="rev", confidence=0.9)
    skill_file.write_text("#!/bin/sh\nrm -rf /\n")
    skill, change = skills.add(db, skill_file)
    assert (change, skill["status"]) == ("changed", "pending")
    assert [h["decision"] for h in skills.history(db, "deploy")] == ["added", "approve", "changed"]


def test_directory_skills_hash_their_files(db, tmp_path):
    folder = tmp_path / "redis-coordination"
    folder.mkdir()
    (folder / "a.sh").write_text("a")
    first = skills.add(db, folder)[0]["content_hash"]
    (folder / "b.sh").write_text("b")
    assert skills.add(db, folder)[0]["content_hash"] != first


@pytest.mark.parametrize("decision,status", [("approve", "approved"), ("reject", "rejected"),
                                             ("escalate", "escalated")])
def test_decisions_set_status_and_history(db, skill_file, decision, status):
    skills.add(db, skill_file)
    skill = skills.decide(db, "deploy", decision, agent_id="rev-1", confidence=0.8, note="ok")
    assert skill["status"] == status
    last = skills.history(db, "deploy")[-1]
    assert (last["agent_id"], last["confidence"], last["metadata"]["note"]) == ("rev-1", 0.8, "ok")


@pytest.mark.parametrize(
    "risk,coverage,expected",
    [(0.30, 0.95, "approve"), (0.10, 0.99, "approve"), (0.31, 0.99, "review"),
     (0.20, 0.94, "review"), (0.60, 0.50, "review"), (0.61, 1.0, "escalate")],
)
def test_automatic_rule_boundaries(risk, coverage, expected):
    assert RULE.judge(risk, coverage)[0] == expected


def test_evaluate_review_leaves_status_but_logs_why(db, skill_file):
    skills.add(db, skill_file)
    skill, decision, why = skills.evaluate(db, "deploy", risk=0.45, coverage=0.99, rule=RULE)
    assert (decision, skill["status"]) == ("review", "pending")
    assert skills.history(db, "deploy")[-1]["metadata"]["rule"] == why


def test_injection_attempts_are_stored_as_text(db, tmp_path):
    path = tmp_path / "evil.sh"
    path.write_text("x")
    skills.add(db, path)
    note = "'); DROP TABLE skills; --"
    skills.decide(db, "evil", "reject", agent_id="a", confidence=0.5, note=note)
    assert skills.history(db, "evil")[-1]["metadata"]["note"] == note
    assert "skills" in db.table_names()
    with pytest.raises(InvalidInput):
        skills.add(db, path, name="x'; DROP TABLE skills;--")


def test_unknown_skill_is_a_negative_outcome(db):
    with pytest.raises(NegativeOutcome):
        skills.decide(db, "ghost", "approve", agent_id="a", confidence=1)


def test_cli_skills_flow(cfn, skill_file):
    assert cfn("skills", "add", str(skill_file)).returncode == 0
    approved = cfn("skills", "evaluate", "deploy", "--risk", "0.1", "--coverage", "0.99")
    assert approved.returncode == 0 and approved.stdout.startswith("approve")
    review = cfn("skills", "evaluate", "deploy", "--risk", "0.5", "--coverage", "0.99")
    assert review.returncode == 1
    # thresholds are configurable
    relaxed = cfn("skills", "evaluate", "deploy", "--risk", "0.5", "--coverage", "0.99",
                  extra_env={"CFN_SKILL_APPROVE_RISK": "0.5"})
    assert relaxed.returncode == 0
    assert cfn("skills", "reject", "deploy", "--agent-id", "rev", "--confidence", "0.7",
               "--note", "needs tests").returncode == 0
    listed = json.loads(cfn("skills", "ls", "--json").stdout)
    assert [(s["name"], s["status"]) for s in listed] == [("deploy", "rejected")]
    hist = json.loads(cfn("skills", "history", "deploy", "--json").stdout)
    assert hist[-1]["metadata"]["note"] == "needs tests"
    bad = cfn("skills", "approve", "deploy", "--agent-id", "rev", "--confidence", "7")
    assert bad.returncode == 2


def test_two_processes_writing_at_once_lose_nothing(tmp_path, redis_socket):
    home = tmp_path / ".cfn"
    db = open_db(home)
    for i in range(2):
        path = tmp_path / f"s{i}.sh"
        path.write_text(str(i))
        skills.add(db, path)
    writer = """
import sys
from pathlib import Path
from cfn import skills
from cfn.db import open_db
from cfn.coordination.decisions import Decision
from cfn.history import decide
import redis
r = redis.Redis(unix_socket_path=sys.argv[3])
db = open_db(Path(sys.argv[1]))
name = sys.argv[2]
for i in range(150):
    skills.decide(db, name, "approve", agent_id="w" + name, confidence=0.5, note=str(i))
    decide(r, db, Decision("task-" + name, "ITERATE", iteration=i + 1), ttl=60)
"""
    procs = [subprocess.Popen([sys.executable, "-c", writer, str(home), f"s{i}",
                               str(redis_socket)], stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    counts = dict(db.execute(
        "SELECT agent_id, count(*) FROM approval_history WHERE agent_id IS NOT NULL "
        "GROUP BY agent_id").fetchall())
    assert counts == {"ws0": 150, "ws1": 150}
    assert db.execute("SELECT count(*) FROM decisions").fetchone()[0] == 300
    notes = [json.loads(m)["note"] for (m,) in db.execute(
        "SELECT metadata FROM approval_history WHERE agent_id = 'ws0' ORDER BY id")]
    assert notes == [str(i) for i in range(150)]
