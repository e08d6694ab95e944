"""What a loop promises across its end and its supervisor's death (issue 13)."""

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from test_loop import APPROVE, GOOD, PROCEED, loop

pytestmark = pytest.mark.usefixtures("reap_supervisors")
ENDINGS = [(PROCEED, "proceeded", 0),
           ({"*": {"decision": "ABORT", "reason": "not worth it"}}, "aborted", 1),
           ({"*": {"decision": "ITERATE", "reason": "not yet"}}, "exhausted", 1)]


def everything_recorded(cfn, r, project) -> dict:
    """What a resume could change: the records, the Redis state, the agents' work."""
    report = cfn("loop", "report", "T1", "--json")
    assert report.returncode == 0, report.stderr
    return {"records": json.loads(report.stdout), "decision": r.get("coord:{T1}:decision"),
            "events": r.xrange("coord:{T1}:events"), "keys": sorted(r.keys("coord:*")),
            "prompts": (project / "prompts.log").read_text(),
            "work": (project / "app.py").read_text()}


@pytest.mark.parametrize(("owner", "status", "code"), ENDINGS, ids=[e[1] for e in ENDINGS])
def test_resuming_a_loop_that_ended_changes_nothing_and_says_how_it_ended(
        cfn, agents, r, project, owner, status, code):  # noqa: F811
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=owner)
    ran_code, ran, progress = loop(cfn, "--max-iterations", "2")
    assert (ran_code, ran["status"]) == (code, status), progress
    before = everything_recorded(cfn, r, project)

    got = cfn("loop", "resume", "T1", "--json", timeout=300)
    assert (got.returncode, json.loads(got.stdout)) == (code, ran)
    assert f"T1's loop already ended: {status}" in got.stderr
    assert everything_recorded(cfn, r, project) == before
    plain = cfn("loop", "resume", "T1")
    assert (plain.returncode, plain.stdout) == (code, "")
    assert f"already ended: {status} ({ran['reason']})" in plain.stderr


@pytest.mark.parametrize("status", ["running", "proceeded"],
                         ids=["killed after deciding, before ending", "ended before reports"])
def test_resume_after_a_proceed_without_its_report_runs_nothing(
        cfn, agents, project, status):  # noqa: F811
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=PROCEED)
    assert loop(cfn)[0] == 0
    prompts = (project / "prompts.log").read_text()
    with contextlib.closing(sqlite3.connect(project / ".cfn" / "cfn.db")) as db, db:
        db.execute("UPDATE tasks SET status = ?, report = NULL", [status])
    got = cfn("loop", "resume", "T1", "--json", timeout=300)
    report = json.loads(got.stdout)
    assert (got.returncode, report["status"], len(report["iterations"])) == (0, "proceeded", 1)
    assert report["reason"] == "criteria met"
    assert (project / "prompts.log").read_text() == prompts  # no agent ran


def test_resume_publishes_a_decision_its_orchestrator_recorded_but_never_published(
        cfn, agents, r, project):  # noqa: F811
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=PROCEED)
    assert loop(cfn)[0] == 0
    published = r.get("coord:{T1}:decision")
    # as if the orchestrator died between recording its decision and publishing it
    r.delete("coord:{T1}:decision")
    with contextlib.closing(sqlite3.connect(project / ".cfn" / "cfn.db")) as db, db:
        db.execute("UPDATE decisions SET published_at = NULL")
    assert cfn("loop", "resume", "T1").returncode == 0
    assert r.get("coord:{T1}:decision") == published


def test_the_loop_notices_a_dead_supervisor_within_the_heartbeat_window(
        cfn, agents, r, project, env):  # noqa: F811
    """The supervisor SIGKILLed under a long implementer: the loop goes on within seconds
    (heartbeat TTL plus a liveness check), not after the profile timeout (60 s + 120 s)."""
    agents(impl={"*": {"confidence": 0.9, "deliverables": ["app.py"], "sleep": 600}},
           rev=APPROVE, qa=APPROVE, po=PROCEED)
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "cfn", "loop", "run", "--task-id", "T1", "--epic", "x",
         "--mode", "mvp", "--loop3-agents", "impl", "--loop2-agents", "rev,qa",
         "--product-owner", "po", "--max-iterations", "1", "--json"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    beat = wait_for_heartbeat(r, "agent:{T1}:l3-impl-1:heartbeat")
    try:
        os.kill(int(beat["supervisor_pid"]), signal.SIGKILL)
        killed = time.monotonic()
        out, progress = orchestrator.communicate(timeout=60)
        noticed_s = time.monotonic() - killed
    finally:
        with contextlib.suppress(ProcessLookupError):  # the orphaned agent, if it outlived it
            os.killpg(int(beat["handle"]), signal.SIGKILL)
        orchestrator.kill()
    assert noticed_s < 30, progress
    report = json.loads(out)
    assert (orchestrator.returncode, report["status"]) == (1, "exhausted"), progress
    assert report["iterations"][0]["gate_passed"] is False
    lost = [json.loads(fields["payload"]) for _, fields in
            r.xrange("coord:{T1}:loop3:complete") if fields["agent"] == "l3-impl-1"]
    assert [record["status"] for record in lost] == ["lost"]
    runs = json.loads(cfn("agents", "ls", "--task-id", "T1", "--json").stdout)
    assert [a["status"] for a in runs if a["agent_id"] == "l3-impl-1"] == ["lost"]


def wait_for_heartbeat(r, key: str) -> dict:
    """The heartbeat's JSON once the agent runs (it names its supervisor and process)."""
    deadline = time.monotonic() + 30
    while not (beat := json.loads(r.get(key) or "{}")).get("handle"):
        assert time.monotonic() < deadline, f"no heartbeat at {key}"
        time.sleep(0.1)
    return beat


def test_of_two_takers_of_a_dead_orchestrators_loop_only_one_wins(r):
    """A heartbeat judged dead is replaced only if it is still the one judged: a second
    taker that came in between keeps the loop."""
    from cfn.coordination import events

    events.beat(r, "T9", {"pid": "dead"})
    assert not events.claim_orchestrator(r, "T9", {"pid": "a"}, dead=lambda beat: False)

    def dead_and_overtaken_meanwhile(beat: dict) -> bool:
        assert events.claim_orchestrator(r, "T9", {"pid": "b"}, dead=lambda _: True)
        return True

    assert not events.claim_orchestrator(r, "T9", {"pid": "a"},
                                         dead=dead_and_overtaken_meanwhile)
    assert events.orchestrator(r, "T9") == {"pid": "b"}
    events.stop_beating(r, "T9")
    assert events.claim_orchestrator(r, "T9", {"pid": "c"}, dead=lambda beat: False)
