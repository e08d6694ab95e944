"""The fault suite: Redis killed and restarted under waits, agents and loops; replies lost
after Redis ran the command; waiters and supervisors that die. docs/guarantees.md names
these tests."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

from faults import LosingProxy, RestartableRedis

pytestmark = pytest.mark.usefixtures("reap_supervisors")


@pytest.fixture
def aof(tmp_path):
    server = RestartableRedis(tmp_path / "aof")
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.fixture
def r(aof):  # the suite's own Redis replaces the shared one (reap_supervisors reads it)
    client = redis.Redis.from_url(aof.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def run(project, env, aof):
    """`cfn ARGS` against the restartable Redis, started in the background."""
    def start(*args: str, url: str | None = None, extra: dict | None = None):
        return subprocess.Popen(
            [sys.executable, "-m", "cfn", *args], cwd=project, text=True,
            env={**env, "REDIS_URL": url or aof.url, **(extra or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return start


def done(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def blocked(r, count: int = 1, command: str = "blmove") -> None:
    deadline = time.monotonic() + 20
    while sum(c.get("cmd") == command for c in r.client_list()) < count:
        assert time.monotonic() < deadline, f"nobody blocked on {command}"
        time.sleep(0.02)


# --- Redis restarts ------------------------------------------------------------------------

def test_a_blocked_wait_rides_out_a_redis_restart(aof, r, run):
    waiter = run("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "30")
    blocked(r)
    aof.restart_after(2).join()
    assert done(run("signal", "send", "--task-id", "T", "--channel", "c",
                    "--payload", "after"))[0] == 0
    code, out, err = done(waiter)
    assert (code, out) == (0, "after\n"), err


def test_a_timeout_stays_a_deadline_while_redis_is_down(aof, r, run):
    waiter = run("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "3")
    blocked(r)
    started = time.monotonic()
    aof.kill()
    code, _, err = done(waiter)
    assert code == 4 and "cannot reach Redis" in err
    assert time.monotonic() - started < 3 + 2  # the deadline, not the reconnect window
    aof.start()


@pytest.mark.parametrize("waiting", [
    ("collect-results", "--task-id", "T", "--expected", "1", "--threshold", "0.5"),
    ("completion", "wait", "--task-id", "T", "--expected", "1"),
], ids=["collect-results", "completion-wait"])
def test_stream_waits_ride_out_a_redis_restart(aof, r, run, waiting):
    waiter = run(*waiting, "--timeout", "30")
    blocked(r, command="xread")
    aof.restart_after(2).join()
    writer = ("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.9") \
        if waiting[0] == "collect-results" else \
        ("completion", "signal", "--task-id", "T", "--agent-id", "a1")
    assert done(run(*writer))[0] == 0
    code, _, err = done(waiter)
    assert code == 0, err


def test_a_running_agent_outlives_a_redis_restart_and_its_record_lands(aof, r, run):
    # after the restart the agent reports as its own Redis user, which the restart lost and
    # its supervisor defined again
    script = ("import subprocess, sys, time; time.sleep(5); code = subprocess.run([sys.executable,"
              " '-m', 'cfn', 'report', '--task-id', 'T', '--agent-id', 'calm-1',"
              " '--confidence', '0.8']).returncode; print('{\"deliverables\": [%d]}' % code)")
    spawned = done(run("spawn-agent", "calm-1", "T", "--profile", "script", "--json", "--",
                       sys.executable, "-c", script))
    assert spawned[0] == 0, spawned[2]
    time.sleep(1)
    aof.restart_after(3).join()  # longer than a heartbeat's refresh, shorter than its TTL
    code, out, err = done(run("agents", "wait", "--task-id", "T", "--timeout", "60", "--json"))
    assert code == 0, err
    record = json.loads(out)["records"]["calm-1"]
    assert (record["status"], record["deliverables"], record["confidence"]) == \
        ("success", [0], 0.8)


def test_a_loop_rides_out_a_redis_restart(aof, r, run, project):
    agents = project / "agents"
    agents.mkdir()
    (project / "a.py").write_text("")
    says = {"impl": {"confidence": 0.9, "deliverables": ["a.py"]}, "rev": {"confidence": 0.95},
            "po": {"decision": "PROCEED", "reason": "done"}}
    for role, said in says.items():
        script = f"import time, json; time.sleep(1.5); print(json.dumps({said!r}))"
        script = script.replace("{", "{{").replace("}", "}}")  # not profile placeholders
        (agents / f"{role}.toml").write_text(
            f'id = "{role}"\nname = "{role}"\nkind = "scripted"\n'
            f"command = {json.dumps([sys.executable, '-c', script])}\n")
    loop = run("loop", "run", "--task-id", "T", "--epic", "e", "--mode", "mvp",
               "--loop3-agents", "impl", "--loop2-agents", "rev", "--product-owner", "po",
               "--json")
    time.sleep(2)
    aof.restart_after(2).join()
    code, out, err = done(loop, timeout=120)
    assert code == 0, err
    assert json.loads(out)["status"] == "proceeded"


# --- replies lost after Redis ran the command ------------------------------------------------

@pytest.fixture
def proxy(aof):
    return LosingProxy(aof.socket)


NO_FAST_PATH = {"CFN_FAST_PATH": "0"}


@pytest.mark.parametrize("extra", [NO_FAST_PATH, {}], ids=["redis-py", "fast-path"])
def test_a_send_whose_reply_is_lost_is_queued_once(r, run, proxy, extra):
    send = ("signal", "send", "--task-id", "T", "--channel", "c")
    assert done(run(*send, "--payload", "first", url=proxy.url, extra=extra))[0] == 0
    proxy.lose_reply_to("EVALSHA")
    code, _, err = done(run(*send, "--payload", "second", url=proxy.url, extra=extra))
    assert proxy.dropped == 1 and code == 0, err
    assert r.lrange("coord:{T}:signal:c", 0, -1) == ["first", "second"]


@pytest.mark.parametrize("extra", [NO_FAST_PATH, {}], ids=["redis-py", "fast-path"])
def test_a_pop_whose_reply_is_lost_keeps_the_signal(r, run, proxy, extra):
    proxy.lose_reply_to("BLMOVE")
    waiter = run("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "20",
                 url=proxy.url, extra=extra)
    blocked(r)
    r.rpush("coord:{T}:signal:c", "only")
    code, out, err = done(waiter)
    assert proxy.dropped == 1 and (code, out) == (0, "only\n"), err
    assert not [k for k in r.scan_iter() if ":taking:" in k]  # acknowledged


@pytest.mark.parametrize("extra", [NO_FAST_PATH, {}], ids=["redis-py", "fast-path"])
def test_a_report_whose_reply_is_lost_is_recorded_once(r, run, proxy, extra):
    report = ("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.5")
    assert done(run(*report, url=proxy.url, extra=extra))[0] == 0
    proxy.lose_reply_to("EVALSHA")
    code, _, err = done(run(*report, "--status", "failure", url=proxy.url, extra=extra))
    assert proxy.dropped == 1 and code == 0, err
    assert [f["status"] for _, f in r.xrange("coord:{T}:results")] == ["success", "failure"]


def test_a_waiter_that_dies_holding_a_signal_gives_it_back(r, run):
    waiter = run("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "30")
    blocked(r)
    os.kill(waiter.pid, signal.SIGSTOP)  # frozen on the server's side of BLMOVE
    r.rpush("coord:{T}:signal:c", "kept")
    time.sleep(0.5)
    os.kill(waiter.pid, signal.SIGKILL)  # it took the signal and died before saying so
    waiter.wait()
    assert r.llen("coord:{T}:signal:c") == 0
    # the next waiter puts it back once the dead one's lease ran out (a slice + 10 s)
    code, out, err = done(run("signal", "wait", "--task-id", "T", "--channel", "c",
                              "--timeout", "40"))
    assert (code, out) == (0, "kept\n"), err


# --- the state directory full or read-only ---------------------------------------------------

@pytest.fixture
def small_home(tmp_path):
    """A 2 MB file system for the state directory (a tmpfs: the tests run as root)."""
    home = tmp_path / "small"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(home)],
                   check=True)
    yield home
    subprocess.run(["umount", "-l", str(home)], check=False)


DECIDE = ("decision", "set", "--task-id", "T", "--decision", "ITERATE", "--iteration", "1",
          "--reason", "again")


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_state_directory_that_refuses_writes_is_said_clearly(r, run, small_home, fault):
    home = {"CFN_HOME": str(small_home)}
    assert done(run(*DECIDE, extra=home))[0] == 0  # the database exists
    before = r.get("coord:{T}:decision")
    if fault == "full":
        subprocess.run(["dd", "if=/dev/zero", f"of={small_home}/filler", "bs=64k"],
                       capture_output=True, check=False)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_home)], check=True)
    code, _, err = done(run(*DECIDE[:5], "PROCEED", *DECIDE[6:], extra=home))
    assert code == 4 and "state directory refused a write" in err, err
    assert "Traceback" not in err and "internal error" not in err
    assert r.get("coord:{T}:decision") == before  # SQLite first: nothing was published


def test_a_lock_whose_reply_is_lost_is_taken_once(r, run, proxy):
    acquire = ("lock", "acquire", "--task-id", "T", "--ttl", "60", "--json")
    assert done(run(*acquire, "--name", "warm", url=proxy.url))[0] == 0  # loads the script
    proxy.lose_reply_to("EVALSHA")
    code, out, err = done(run(*acquire, "--name", "db", url=proxy.url))
    assert proxy.dropped == 1 and code == 0, err  # not "held by another holder"
    held = json.loads(out)
    assert r.get("lock:{T}:db") == held["token"] and held["fence"] == 1
