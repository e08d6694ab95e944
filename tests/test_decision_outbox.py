"""Decisions go to SQLite first and reach Redis from there, so the two never disagree."""

import contextlib
import json
import random
import sqlite3
import subprocess
import sys
import time

import pytest
import redis

from cfn import Project, history
from cfn.coordination import decisions
from cfn.coordination.decisions import Decision
from cfn.db import immediate

KEY = "coord:{T1}:decision"
WRITES_HELD_S = 0.3


@pytest.fixture
def publications(r):
    """How many times Redis was given T1's decision (keyspace notifications of SET)."""
    r.config_set("notify-keyspace-events", "K$")
    listener = r.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(f"__keyspace@0__:{KEY}")

    def count() -> int:
        deadline = time.monotonic() + 0.3  # notifications are asynchronous: let them arrive
        while time.monotonic() < deadline:
            message = listener.get_message(timeout=0.05)  # None for the subscription's reply
            count.seen += message is not None and message["data"] == "set"
        return count.seen

    count.seen = 0
    yield count
    listener.close()
    r.config_set("notify-keyspace-events", "")


def recorded(project) -> list[dict]:
    """T1's decisions as SQLite holds them, oldest first ([] before any database)."""
    path = project / ".cfn" / "cfn.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.row_factory = sqlite3.Row
        with contextlib.suppress(sqlite3.OperationalError):  # killed before its tables
            return [dict(row) for row in db.execute(
                "SELECT * FROM decisions WHERE task_id = 'T1' ORDER BY id")]
    return []


def test_a_decision_recorded_but_never_published_is_published_once_by_the_next_process(
        cfn, r, project, env, publications):
    unreachable = redis.Redis(unix_socket_path=str(project / "no-redis.sock"))
    # a process that dies between SQLite and Redis
    with Project.open(project, env=env) as killed, pytest.raises(redis.ConnectionError):
        history.decide(unreachable, killed.sqlite,
                       Decision("T1", "ITERATE", 1, "po", 0.8, "tests missing"), ttl=600)
    assert [d["decision"] for d in recorded(project)] == ["ITERATE"] and r.get(KEY) is None

    got = cfn("decision", "get", "--task-id", "T1", "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == json.loads(r.get(KEY))
    assert json.loads(got.stdout)["reason"] == "tests missing"
    assert publications() == 1
    assert cfn("decision", "get", "--task-id", "T1").stdout == "ITERATE\n"
    assert publications() == 1  # published once: the next process does not again
    assert recorded(project)[0]["published_at"] is not None


def test_an_older_decision_published_late_never_replaces_a_newer_one(cfn, r, project, env):
    with Project.open(project, env=env) as p:
        with immediate(p.sqlite):  # a slow process recorded the first, then stalled
            late = history.record_decision(p.sqlite, Decision("T1", "ITERATE", 1))
        p.decide(Decision("T1", "PROCEED", 2))
        assert decisions.publish(p.redis, late, ttl=600) is False
    assert json.loads(r.get(KEY))["decision"] == "PROCEED"
    assert cfn("decision", "get", "--task-id", "T1").stdout == "PROCEED\n"


def test_decision_set_killed_at_random_points_leaves_sqlite_and_redis_agreeing(
        cfn, r, project, env):
    """30 runs of `cfn decision set`, each SIGKILLed at a random moment of its life, Redis
    holding writes back for a while (as a busy server does) so that many kills land between
    SQLite and Redis; after each, any decision command leaves Redis holding SQLite's newest
    decision."""
    def decision_set(n: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "cfn", "decision", "set", "--task-id", "T1", "--decision",
             "ITERATE", "--iteration", str(n), "--reason", f"run {n}"],
            cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    started = time.monotonic()
    assert decision_set(1).wait(timeout=60) == 0
    lifetime = time.monotonic() - started + WRITES_HELD_S
    rng = random.Random(13)
    for n in range(2, 32):
        r.client_pause(int(WRITES_HELD_S * 1000), all=False)  # reads go on, writes wait
        proc = decision_set(n)
        time.sleep(rng.uniform(0, lifetime))
        proc.kill()
        proc.wait(timeout=60)
        r.client_unpause()
        got = cfn("decision", "get", "--task-id", "T1", "--json")
        assert got.returncode == 0, got.stderr
        newest = recorded(project)[-1]
        published = json.loads(r.get(KEY))
        assert json.loads(got.stdout) == published
        assert (published["iteration"], published["reason"]) == (newest["iteration"],
                                                                 newest["reason"]), n
