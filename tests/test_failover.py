"""Failover between the primary and REDIS_FALLBACK_1 (cfn.failover): the primary SIGKILLed
under waiters, agents and locks; what it acknowledged moved to the fallback, which took
over, once it is back; nothing stranded, split or delivered twice. docs/guarantees.md names
these tests."""

import contextlib
import json
import subprocess
import sys

import pytest
import redis

from faults import RestartableRedis

pytestmark = pytest.mark.usefixtures("reap_supervisors")


@pytest.fixture
def primary(tmp_path):
    yield from _server(tmp_path / "primary")


@pytest.fixture
def fallback(tmp_path):
    yield from _server(tmp_path / "fallback")


def _server(directory):
    server = RestartableRedis(directory)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.fixture
def p(primary):
    return redis.Redis.from_url(primary.url, decode_responses=True)


@pytest.fixture
def r(fallback):  # reap_supervisors reads the fallback: the home once it took over
    return redis.Redis.from_url(fallback.url, decode_responses=True)


@pytest.fixture
def run(project, primary, fallback):
    """`cfn ARGS` with the primary and the fallback configured, started in the background."""
    import os

    env = {**os.environ, "CFN_HOME": str(project / ".cfn"), "REDIS_URL": primary.url,
           "REDIS_FALLBACK_1": fallback.url}

    def start(*args: str, extra: dict | None = None) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cfn", *args], cwd=project,
                                env={**env, **(extra or {})},
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
    return start


def done(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def ok(process: subprocess.Popen) -> str:
    code, out, err = done(process)
    assert code == 0, err
    return out


def blocked(client, command: str = "blmove") -> None:
    import time

    deadline = time.monotonic() + 20
    while not any(c.get("cmd") == command for c in client.client_list()):
        assert time.monotonic() < deadline, f"nobody blocked on {command}"
        time.sleep(0.02)


def cfn_keys(client) -> list[str]:
    return sorted(k for k in client.scan_iter() if not k.startswith("cfn:"))


def test_the_fallback_takes_over_and_the_returning_primary_is_drained(primary, fallback,
                                                                      p, r, run):
    ok(run("signal", "send", "--task-id", "T", "--channel", "early", "--payload", "s1"))
    ok(run("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.9"))
    waiter = run("signal", "wait", "--task-id", "T", "--channel", "late", "--timeout", "60")
    blocked(p)
    primary.kill()  # holding s1 and a1's report, acknowledged (AOF, fsync always)

    ok(run("signal", "send", "--task-id", "T", "--channel", "late", "--payload", "s2"))
    assert ok(waiter) == "s2\n"  # the blocked waiter followed the fallback
    ok(run("report", "--task-id", "T", "--agent-id", "a2", "--confidence", "0.8"))

    primary.start()  # back with s1 and a1's report: the fallback stays home
    got = json.loads(ok(run("collect-results", "--task-id", "T", "--expected", "2",
                            "--threshold", "1", "--timeout", "10", "--json")))
    assert sorted(x["agent_id"] for x in got["results"]) == ["a1", "a2"]
    assert ok(run("signal", "wait", "--task-id", "T", "--channel", "early",
                  "--timeout", "5")) == "s1\n"
    assert cfn_keys(p) == []  # nothing stranded on the old primary
    assert r.xlen("coord:{T}:results") == 2  # nor split, nor doubled
    assert done(run("signal", "wait", "--task-id", "T", "--channel", "early",
                    "--timeout", "0.5"))[0] == 3

    # they trade places again: the fallback dies, the primary takes over, and so on
    ok(run("signal", "send", "--task-id", "T", "--channel", "early", "--payload", "s3"))
    fallback.kill()
    ok(run("report", "--task-id", "T", "--agent-id", "a3", "--confidence", "0.7"))
    fallback.start()
    got = json.loads(ok(run("collect-results", "--task-id", "T", "--expected", "3",
                            "--threshold", "1", "--timeout", "10", "--json")))
    assert got["count"] == 3
    assert ok(run("signal", "wait", "--task-id", "T", "--channel", "early",
                  "--timeout", "5")) == "s3\n"
    assert cfn_keys(r) == [] and p.hget("cfn:failover", "epoch") == "2"


def test_a_signal_taken_on_the_old_home_and_never_acknowledged_is_delivered_once(
        primary, p, r, run):
    ok(run("signal", "send", "--task-id", "T", "--channel", "c", "--payload", "first"))
    # a waiter took it, and the primary died before the reply reached it: its taking list
    # and its lease (long run out) are all that is left of it
    p.lmove("coord:{T}:signal:c", "coord:{T}:signal:c:taking:gone", "LEFT", "RIGHT")
    p.zadd("coord:{T}:signal:c:waiters", {"gone": 1})
    primary.kill()
    ok(run("signal", "send", "--task-id", "T", "--channel", "c", "--payload", "second"))
    primary.start()
    got = [ok(run("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "5"))
           for _ in range(2)]
    assert got == ["first\n", "second\n"]  # the older first, each once
    assert done(run("signal", "wait", "--task-id", "T", "--channel", "c",
                    "--timeout", "0.5"))[0] == 3


def test_fences_keep_growing_across_failovers(primary, fallback, run):
    def fence() -> int:
        taken = json.loads(ok(run("lock", "acquire", "--task-id", "T", "--name", "deploy",
                                  "--ttl", "60", "--json")))
        ok(run("lock", "release", "--task-id", "T", "--name", "deploy",
               "--token", taken["token"]))
        return taken["fence"]

    fences = [fence()]
    primary.kill()
    fences.append(fence())  # the fallback's counter lags the primary's
    primary.start()
    fences.append(fence())
    fallback.kill()
    fences.append(fence())  # and the drained primary's has been emptied
    fallback.start()
    assert fences == sorted(set(fences)), fences


def test_an_agent_follows_the_fallback_and_its_record_lands(primary, p, r, run):
    script = ("import subprocess, sys; go = subprocess.run([sys.executable, '-m', 'cfn', "
              "'signal', 'wait', '--task-id', 'T', '--channel', 'go', '--timeout', '60'], "
              "capture_output=True, text=True).stdout.strip(); code = subprocess.run("
              "[sys.executable, '-m', 'cfn', 'report', '--task-id', 'T', '--agent-id', "
              "'calm-1', '--confidence', '0.8']).returncode; "
              "print(json.dumps({'deliverables': [go, code]}))")
    ok(run("spawn-agent", "calm-1", "T", "--profile", "script", "--json", "--",
           sys.executable, "-c", "import json; " + script))
    blocked(p)  # the agent waits, on the primary, as its own Redis user
    primary.kill()
    ok(run("signal", "send", "--task-id", "T", "--channel", "go", "--payload", "now"))
    out = ok(run("agents", "wait", "--task-id", "T", "--timeout", "60", "--json"))
    record = json.loads(out)["records"]["calm-1"]
    assert (record["status"], record["deliverables"], record["confidence"]) == \
        ("success", ["now", 0], 0.8)
    assert r.xlen("coord:{T}:complete") == 1


def test_an_agents_newer_report_on_the_fallback_is_not_undone_by_the_drain(primary, run):
    ok(run("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.5"))
    primary.kill()
    ok(run("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.9"))
    primary.start()
    got = json.loads(ok(run("collect-results", "--task-id", "T", "--expected", "1",
                            "--threshold", "1", "--timeout", "5", "--json")))
    assert [x["confidence"] for x in got["results"]] == [0.9]


def test_a_key_that_cannot_be_moved_stays_and_connecting_still_works(primary, p, r, run):
    ok(run("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.5"))
    p.hset("coord:{T}:results:sent:evil", "x", "y")  # an agent may write these keys
    p.set("lock:other-app-mutex", "theirs")  # another application's key: not cfn's
    primary.kill()
    ok(run("signal", "send", "--task-id", "T", "--channel", "c", "--payload", "x"))
    primary.start()
    ok(run("signal", "send", "--task-id", "T", "--channel", "c", "--payload", "y"))
    assert p.get("lock:other-app-mutex") == "theirs" and not r.exists("lock:other-app-mutex")
    assert r.xlen("coord:{T}:results") == 1  # the report moved all the same


def test_a_busy_primary_is_not_failed_over(primary, p, r, run):
    """A Redis that answers with an error (here BUSY: an agent's endless script) is not
    down: nobody takes over from it, and what it holds stays where it is."""
    import threading
    import time

    ok(run("signal", "send", "--task-id", "T", "--channel", "c", "--payload", "x"))
    busy = redis.Redis.from_url(primary.url)
    threading.Thread(target=lambda: _ignore(busy.eval, "while true do end", 0),
                     daemon=True).start()
    time.sleep(5.5)  # Redis answers BUSY once a script has run 5 s
    try:
        code, _, err = done(run("signal", "send", "--task-id", "T", "--channel", "c",
                                "--payload", "y", extra={"CFN_RECONNECT_WINDOW": "2"}))
        assert code == 4, err
        assert r.hget("cfn:failover", "epoch") == "0"  # no takeover
    finally:
        redis.Redis.from_url(primary.url).script_kill()
    assert p.lrange("coord:{T}:signal:c", 0, -1) == ["x"]


def _ignore(call, *args):
    with contextlib.suppress(redis.exceptions.RedisError):  # killed: the point
        call(*args)


def test_a_fallback_paired_with_another_primary_is_refused(tmp_path, primary, fallback, run,
                                                           project):
    import os

    ok(run("signal", "send", "--task-id", "T", "--channel", "c", "--payload", "x"))
    other = RestartableRedis(tmp_path / "other")
    other.start()
    try:
        env = {**os.environ, "CFN_HOME": str(project / ".cfn2"), "REDIS_URL": other.url,
               "REDIS_FALLBACK_1": fallback.url}
        got = subprocess.run([sys.executable, "-m", "cfn", "signal", "send", "--task-id", "T",
                              "--channel", "c", "--payload", "y"], env=env, text=True,
                             capture_output=True, timeout=60)
        assert got.returncode == 2 and "a fallback serves one primary" in got.stderr
    finally:
        other.kill()
