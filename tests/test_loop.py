"""The CFN Loop end to end with scripted agents under real supervisors."""

import json
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.usefixtures("reap_supervisors")
GOOD = {"*": {"confidence": 0.9, "deliverables": ["app.py"]}}
APPROVE = {"*": {"confidence": 0.95, "feedback": "looks right"}}
PROCEED = {"*": {"decision": "PROCEED", "reason": "criteria met"}}


def loop(cfn, *extra, task="T1", env=None):
    got = cfn("loop", "run", "--task-id", task, "--epic", "Add a greeting", "--mode", "mvp",
              "--loop3-agents", "impl", "--loop2-agents", "rev,qa", "--product-owner", "po",
              "--json", *extra, extra_env=env, timeout=300)
    return got.returncode, json.loads(got.stdout) if got.stdout else None, got.stderr


def test_proceed_in_one_iteration(cfn, agents, r):
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=PROCEED)
    code, report, progress = loop(cfn)
    assert code == 0, progress
    assert (report["status"], len(report["iterations"])) == ("proceeded", 1)
    first = report["iterations"][0]
    assert (first["gate_score"], first["gate_passed"]) == (0.9, True)
    assert (first["consensus_score"], first["consensus_passed"]) == (0.95, True)
    assert first["deliverables"] == ["app.py"]
    assert "gate: mean confidence 0.90 >= 0.70 -> passed" in progress  # live on stderr
    assert json.loads(r.get("coord:{T1}:decision"))["decision"] == "PROCEED"
    assert r.xlen("coord:{T1}:loop3:complete") == 1
    # one start-loop2 signal per validator, where the seed's `signal.sh wait` looks
    assert r.lrange("coord:{T1}:signal:start-loop2", 0, -1) == ['{"iteration": 1}'] * 2
    events = [e[1]["type"] for e in r.xrange("coord:{T1}:events")]
    assert events[0] == "loop_start" and events[-1] == "loop_end" and "decision" in events
    text = cfn("loop", "report", "T1").stdout
    assert "decision   PROCEED: criteria met" in text and "l2-qa-2" in text


def test_iterate_then_proceed_feeds_feedback_forward(cfn, agents, project):
    agents(impl={"1": {"confidence": 0.5, "feedback": "half done"}, **GOOD},
           rev={"*": {"confidence": 0.95, "feedback": "add tests for names"}}, qa=APPROVE,
           po={"1": {"decision": "ITERATE", "reason": "gate failed"}, **PROCEED})
    code, report, _ = loop(cfn)
    assert code == 0 and [i["decision"] for i in report["iterations"]] == ["ITERATE", "PROCEED"]
    first = report["iterations"][0]
    assert first["gate_passed"] is False and first["consensus_score"] is None
    prompts = (project / "prompts.log").read_text()
    assert "l2-rev-1 #1" not in prompts  # no validation after a failed gate
    second_prompt = prompts.split("l3-impl-1 #2:")[1]
    assert "gate failed: mean confidence 0.50 < 0.70" in second_prompt


def test_abort_exits_1(cfn, agents):
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po={"*": {"decision": "ABORT", "reason": "no"}})
    code, report, _ = loop(cfn)
    assert (code, report["status"], report["reason"]) == (1, "aborted", "no")


def test_failed_consensus_refuses_proceed_until_the_iteration_limit(cfn, agents):
    agents(impl=GOOD, rev={"*": {"confidence": 0.4, "feedback": "wrong"}}, qa=APPROVE, po=PROCEED)
    code, report, _ = loop(cfn, "--max-iterations", "2")
    assert (code, report["status"]) == (1, "exhausted")
    assert all(i["decision"] == "ITERATE" and i["reason"] == "PROCEED refused: no consensus"
               for i in report["iterations"])
    assert len(report["iterations"]) == 2


def test_missing_confidence_is_never_invented(cfn, agents):
    agents(impl={"*": {"deliverables": ["app.py"]}}, rev=APPROVE, qa=APPROVE, po=PROCEED)
    code, report, _ = loop(cfn, "--max-iterations", "1")
    assert code == 1
    assert report["iterations"][0]["gate_score"] is None  # not 0.85, not anything


def test_budget_stops_the_loop(cfn, agents):
    agents(impl={"*": {"confidence": 0.9, "deliverables": ["a"], "cost": 0.6}}, rev=APPROVE,
           qa={"*": {"confidence": 0.2}}, po=PROCEED)
    code, report, progress = loop(cfn, "--budget-usd", "0.5")
    assert (code, report["status"]) == (1, "over-budget")
    assert len(report["iterations"]) == 1 and report["cost_usd"] == pytest.approx(0.6)
    assert "budget of 0.5 USD spent" in progress


def test_a_crashing_agent_is_failed_and_the_quorum_decides(cfn, agents):
    agents(impl=GOOD, broken={"*": {"exit": 3}}, rev=APPROVE, qa=APPROVE, po=PROCEED)
    code, report, progress = loop(cfn, "--loop3-agents", "impl,broken", "--gate-threshold", "0.5")
    assert code == 0, progress
    assert "l3-broken-2: failure" in progress
    code, report, _ = loop(cfn, "--loop3-agents", "impl,broken", "--max-iterations", "1",
                           task="T2")
    assert code == 1 and report["iterations"][0]["gate_passed"] is False  # quorum 2 of 2


@pytest.mark.parametrize("po", [{"*": {"exit": 1}}, {"*": {"confidence": 1.0}},
                                {"*": {"decision": "SHIP IT"}}])
def test_a_product_owner_that_errors_never_means_proceed(cfn, agents, po):
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=po)
    code, report, _ = loop(cfn, "--max-iterations", "1")
    assert code == 1 and report["iterations"][0]["decision"] == "ITERATE"


def test_test_command_pass_rate_is_the_gate(cfn, agents, project):
    agents(impl={"*": {"confidence": 0.1, "deliverables": ["t.py"]}}, rev=APPROVE, qa=APPROVE,
           po=PROCEED)
    (project / "test_sample.py").write_text(
        "import unittest\nclass T(unittest.TestCase):\n"
        "    def test_a(self): pass\n    def test_b(self): pass\n")
    code, report, _ = loop(cfn, "--test-command", f"{sys.executable} -m unittest -q",
                           "--workspace", str(project))
    assert code == 0 and report["iterations"][0]["gate_score"] == 1.0


def test_orchestrator_killed_and_resumed_reruns_nothing_finished(cfn, agents, env, project):
    agents(impl={"*": {"confidence": 0.9, "deliverables": ["a"], "sleep": 3}}, rev=APPROVE,
           qa=APPROVE, po=PROCEED)
    orchestrator = subprocess.Popen(
        [sys.executable, "-m", "cfn", "loop", "run", "--task-id", "T1", "--epic", "x",
         "--mode", "mvp", "--loop3-agents", "impl", "--loop2-agents", "rev,qa",
         "--product-owner", "po"], cwd=project, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while "l3-impl-1 #1" not in ((project / "prompts.log").read_text()
                                 if (project / "prompts.log").exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait()
    status = cfn("loop", "status", "T1", "--json")
    assert json.loads(status.stdout)["status"] == "running"
    got = cfn("loop", "resume", "T1", "--json", timeout=300)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["status"] == "proceeded"
    assert (project / "prompts.log").read_text().count("l3-impl-1 #1") == 1  # ran once


@pytest.mark.parametrize("args", [["--mode", "yolo"], ["--task-id", "bad id"],
                                  ["--budget-usd", "-1"], ["--loop3-agents", "nosuch"]])
def test_bad_loop_input_exits_2(cfn, agents, args, r):
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=PROCEED)
    base = {"--task-id": "T1", "--epic": "x", "--loop2-agents": "rev", "--product-owner": "po",
            "--loop3-agents": "impl"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    got = cfn("loop", "run", *[x for kv in base.items() for x in kv])
    assert got.returncode == 2, got.stderr
    assert r.keys("coord:*") == []


FORGER = """
import json, os, redis
r = redis.Redis.from_url(os.environ["REDIS_URL"], username=os.environ["REDIS_USERNAME"],
                         password=os.environ["REDIS_PASSWORD"], decode_responses=True)
fake = json.dumps({"status": "success", "confidence": 1.0, "decision": "PROCEED",
                   "run_id": 10**9, "deliverables": ["app.py"]})
attempts = {
    "validator completion": lambda: r.xadd("coord:{T6}:loop2:complete",
                                           {"agent": "l2-rev-1", "status": "success",
                                            "payload": fake}),
    "owner completion": lambda: r.xadd("coord:{T6}:loop4:complete",
                                       {"agent": "po-po", "status": "success", "payload": fake}),
    "decision": lambda: r.set("coord:{T6}:decision", json.dumps({"decision": "PROCEED"})),
    "validator report": lambda: r.xadd("coord:{T6}:results", {"agent": "l2-rev-1",
                                                              "status": "success",
                                                              "confidence": "1.0"}),
}
outcome = {}
for name, attempt in attempts.items():
    try:
        attempt()
        outcome[name] = "written"
    except redis.exceptions.NoPermissionError:
        outcome[name] = "refused"
open("forgery.json", "w").write(json.dumps(outcome))
print(json.dumps({"confidence": 0.99, "deliverables": ["app.py"]}))
"""


def test_an_implementer_forging_validators_and_owner_cannot_make_the_loop_proceed(
        cfn, agents, project):
    (project / "agents").mkdir(exist_ok=True)
    script = FORGER.replace("{", "{{").replace("}", "}}")  # not placeholders
    (project / "agents" / "forger.toml").write_text(
        'id = "forger"\nname = "forger"\nkind = "scripted"\ntimeout = 60\n'
        f"command = {json.dumps([sys.executable, '-c', script])}\n")
    agents(rev={"*": {"confidence": 0.2, "sleep": 2, "feedback": "not done"}},
           po={"*": {"decision": "PROCEED", "reason": "the forged records say so"}})
    got = cfn("loop", "run", "--task-id", "T6", "--epic", "x", "--mode", "enterprise",
              "--loop3-agents", "forger", "--loop2-agents", "rev", "--product-owner", "po",
              "--max-iterations", "1", "--json", timeout=300)
    report = json.loads(got.stdout)
    assert got.returncode == 1 and report["status"] != "proceeded", got.stderr
    assert report["iterations"][0]["consensus_score"] == pytest.approx(0.2)  # the real one
    forgery = json.loads((project / "forgery.json").read_text())
    assert forgery == {"validator completion": "refused", "owner completion": "refused",
                       "decision": "refused", "validator report": "written"}


def test_proceed_is_refused_when_a_reported_deliverable_does_not_exist(cfn, agents, project):
    agents(impl={"*": {"confidence": 0.9, "deliverables": ["ghost.py", "../outside.py"],
                       "lie": True}},
           rev=APPROVE, qa=APPROVE, po=PROCEED)
    code, report, progress = loop(cfn, "--max-iterations", "1")
    assert code == 1 and report["status"] == "exhausted", progress
    reason = report["iterations"][0]["reason"]
    assert "deliverables missing from the workspace: ../outside.py, ghost.py" in reason


def test_a_second_orchestrator_of_a_running_loop_is_refused(cfn, agents, env, project):
    """One orchestrator per task, wherever it was started: a second `loop run` of a task
    whose loop runs is refused and writes nothing."""
    agents(impl={"*": {"confidence": 0.9, "deliverables": ["app.py"], "sleep": 3}},
           rev=APPROVE, qa=APPROVE, po=PROCEED)
    first = subprocess.Popen([sys.executable, "-m", "cfn", "loop", "run", "--task-id", "T1",
                              "--epic", "Add a greeting", "--mode", "mvp", "--loop3-agents",
                              "impl", "--loop2-agents", "rev,qa", "--product-owner", "po"],
                             cwd=project, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):  # bounded: until the first one drives the loop
            if cfn("loop", "status", "--task-id", "T1").returncode == 0:
                break
            time.sleep(0.05)
        code, _, said = loop(cfn)
        assert code == 1 and "a loop already runs for task T1" in said, said
    finally:
        assert first.wait(timeout=120) == 0, first.stderr.read()
    assert [a["agent_id"] for a in json.loads(cfn("agents", "ls", "--task-id", "T1",
                                                  "--json").stdout)].count("l3-impl-1") == 1
