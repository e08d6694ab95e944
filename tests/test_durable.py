"""Redis data that matters has its durable record: history answers after a flush."""

import json


def test_history_survives_a_redis_flush(cfn, r):
    for agent, conf in (("a1", "0.9"), ("a2", None)):
        args = ["report", "--task-id", "t1", "--agent-id", agent, "--result", '{"ok": 1}']
        assert cfn(*args, *(["--confidence", conf] if conf else [])).returncode == 0
    for _ in range(2):  # collecting twice records each report once
        got = cfn("collect-results", "--task-id", "t1", "--expected", "2", "--threshold", "1")
        assert got.returncode == 0, got.stderr
    decided = cfn("decision", "set", "--task-id", "t1", "--decision", "ITERATE",
                  "--iteration", "1", "--agent-id", "po", "--reason", "tests missing")
    assert decided.returncode == 0, decided.stderr
    assert cfn("decision", "get", "--task-id", "t1").stdout == "ITERATE\n"

    r.flushall()
    assert cfn("decision", "get", "--task-id", "t1").returncode == 1  # gone from Redis

    hist = cfn("history", "t1", "--json")
    assert hist.returncode == 0, hist.stderr
    doc = json.loads(hist.stdout)
    assert [(x["agent_id"], x["confidence"]) for x in doc["results"]] == [("a1", 0.9),
                                                                          ("a2", None)]
    assert doc["results"][0]["result"] == {"ok": 1}
    assert [(d["decision"], d["reason"]) for d in doc["decisions"]] == [("ITERATE",
                                                                         "tests missing")]
    text = cfn("history", "t1")
    assert "ITERATE" in text.stdout and "a2\tsuccess\t-" in text.stdout


def test_history_of_an_unknown_task_exits_1(cfn):
    got = cfn("history", "never-seen")
    assert got.returncode == 1 and got.stdout == ""


def test_an_invalid_decision_exits_2_and_writes_nothing(cfn, r, project):
    got = cfn("decision", "set", "--task-id", "t1", "--decision", "MAYBE")
    assert got.returncode == 2
    assert r.dbsize() == 0 and not (project / ".cfn" / "cfn.db").exists()
