import json
import threading
import time

import pytest

from cfn.coordination import completion, context, locks
from cfn.errors import NegativeOutcome, TimedOut

TTL, MAX = 3600, 1 << 20


# --- context -----------------------------------------------------------------

def test_context_store_get_list_delete(r):
    context.store(r, "t1", "deliverables", '["a.py"]', ttl=None, max_bytes=MAX)
    context.store(r, "t1", "metadata", "{}", ttl=60, max_bytes=MAX)
    context.store(r, "t2", "other", "x", ttl=None, max_bytes=MAX)
    assert context.get(r, "t1", "deliverables") == '["a.py"]'
    assert context.list_keys(r, "t1") == ["deliverables", "metadata"]
    assert 0 < r.ttl("context:{t1}:metadata") <= 60
    assert r.ttl("context:{t1}:deliverables") == -1
    context.delete(r, "t1", "deliverables")
    with pytest.raises(NegativeOutcome):
        context.get(r, "t1", "deliverables")
    with pytest.raises(NegativeOutcome):
        context.delete(r, "t1", "deliverables")


def test_cli_context(cfn):
    assert cfn("context", "store", "--task-id", "t1", "--key", "k", "--value", "v 1",
               "--ttl", "60").returncode == 0
    assert cfn("context", "get", "--task-id", "t1", "--key", "k").stdout == "v 1\n"
    assert json.loads(cfn("context", "list", "--task-id", "t1", "--json").stdout)["keys"] == ["k"]
    missing = cfn("context", "get", "--task-id", "t1", "--key", "nope")
    assert missing.returncode == 1 and missing.stdout == ""


# --- completion --------------------------------------------------------------

def test_completion_wait_blocks_until_expected_agents_finished(r):
    completion.signal_completion(r, "t1", "a1", phase="loop3", ttl=TTL, max_bytes=MAX)
    done = {}

    def waiter():
        done["c"] = completion.wait_for_completion(
            r.client(), "t1", expected=2, timeout=20, phase="loop3")

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()
    completion.signal_completion(r, "t1", "a2", status="failure", payload="boom", phase="loop3",
                                 ttl=TTL, max_bytes=MAX)
    thread.join(timeout=20)
    assert done["c"].agents == {"a1": {"status": "success", "payload": None},
                                "a2": {"status": "failure", "payload": "boom"}}
    assert r.type("coord:{t1}:loop3:complete") == "stream"


def test_completion_timeout(r):
    outcome = completion.wait_for_completion(r, "t1", expected=1, timeout=0.2)
    assert outcome.timed_out and outcome.count == 0


def test_cli_completion(cfn):
    assert cfn("completion", "signal", "--task-id", "t1", "--agent-id", "a1").returncode == 0
    got = cfn("completion", "wait", "--task-id", "t1", "--expected", "1", "--timeout", "5")
    assert (got.returncode, got.stdout) == (0, "a1\tsuccess\n")
    late = cfn("completion", "wait", "--task-id", "t1", "--expected", "2", "--timeout", "0.2")
    assert late.returncode == 3


# --- locks -------------------------------------------------------------------

def test_lock_is_exclusive_and_only_the_holder_releases(r):
    held = locks.acquire(r, "t1", "deploy", ttl=30)
    with pytest.raises(NegativeOutcome):
        locks.acquire(r, "t1", "deploy", ttl=30)
    with pytest.raises(NegativeOutcome):
        locks.release(r, "t1", "deploy", "not-the-token")
    with pytest.raises(NegativeOutcome):
        locks.extend(r, "t1", "deploy", "not-the-token", ttl=30)
    locks.extend(r, "t1", "deploy", held.token, ttl=60)
    assert 30_000 < r.pttl("lock:{t1}:deploy") <= 60_000
    locks.release(r, "t1", "deploy", held.token)
    again = locks.acquire(r, "t1", "deploy", ttl=30)
    assert again.fence > held.fence


def test_fencing_number_grows_after_a_lapsed_lease(r):
    first = locks.acquire(r, "t1", "db", ttl=0.05)
    time.sleep(0.1)
    second = locks.acquire(r, "t1", "db", ttl=30)
    assert second.fence == first.fence + 1
    with pytest.raises(NegativeOutcome):
        locks.release(r, "t1", "db", first.token)  # the lapsed holder cannot release


def test_waiting_acquirer_wakes_on_release(r):
    held = locks.acquire(r, "t1", "res", ttl=30)
    got = {}

    def waiter():
        got["lock"] = locks.acquire(r.client(), "t1", "res", ttl=30, wait=20)
        got["at"] = time.monotonic()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    released_at = time.monotonic()
    locks.release(r, "t1", "res", held.token)
    thread.join(timeout=20)
    assert got["lock"].fence == held.fence + 1
    assert got["at"] - released_at < 5  # woke on release, not at the 30 s lease end


def test_wait_for_a_held_lock_times_out(r):
    locks.acquire(r, "t1", "res", ttl=30)
    with pytest.raises(TimedOut):
        locks.acquire(r, "t1", "res", ttl=30, wait=0.2)


def test_cli_lock(cfn):
    got = cfn("lock", "acquire", "--task-id", "t1", "--name", "n", "--ttl", "30", "--json")
    held = json.loads(got.stdout)
    assert held["fence"] == 1
    assert cfn("lock", "acquire", "--task-id", "t1", "--name", "n", "--ttl", "30").returncode == 1
    assert cfn("lock", "acquire", "--task-id", "t1", "--name", "n", "--ttl", "30",
               "--wait", "0.2").returncode == 3
    assert cfn("lock", "release", "--task-id", "t1", "--name", "n",
               extra_env={"CFN_LOCK_TOKEN": held["token"]}).returncode == 0
    assert cfn("lock", "release", "--task-id", "t1", "--name", "n", "--token",
               held["token"]).returncode == 1


def test_a_large_value_arrives_whole_through_a_pipe(cfn, r):
    """cfn leaves with os._exit once its work is done: what it printed is flushed first."""
    value = "x" * (1024 * 1024 - 100)
    r.set("context:{T}:big", value)
    got = cfn("context", "get", "--task-id", "T", "--key", "big")
    assert got.returncode == 0 and got.stdout == value + "\n"
