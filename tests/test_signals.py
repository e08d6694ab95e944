import json
import threading
import time

import pytest

from cfn.coordination import signals
from cfn.errors import InvalidInput, TimedOut

TTL, MAX = 3600, 1024


def test_signal_sent_before_waiter_starts_is_received(r):
    signals.send(r, "t1", "start-loop2", "go", ttl=TTL, max_bytes=MAX)
    assert signals.wait(r, "t1", "start-loop2", timeout=1) == "go"


def test_wait_blocks_on_server_and_wakes_on_send(r):
    got = {}

    def waiter():
        got["payload"] = signals.wait(r.client(), "t1", "ch", timeout=20)
        got["at"] = time.monotonic()

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 10
    while not any(c.get("cmd") in ("blpop", "blmove") for c in r.client_list()):
        assert time.monotonic() < deadline, "waiter never blocked on BLPOP"
        time.sleep(0.01)
    sent_at = time.monotonic()
    signals.send(r, "t1", "ch", "payload-1", ttl=TTL, max_bytes=MAX)
    thread.join(timeout=20)
    assert got["payload"] == "payload-1"
    assert got["at"] - sent_at < 5  # woke on the send, not at the 20 s timeout


def test_each_signal_goes_to_exactly_one_waiter(r):
    received = []
    lock = threading.Lock()

    def waiter():
        payload = signals.wait(r.client(), "t1", "ch", timeout=20)
        with lock:
            received.append(payload)

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(3):
        signals.send(r, "t1", "ch", f"s{i}", ttl=TTL, max_bytes=MAX)
    for t in threads:
        t.join(timeout=20)
    assert sorted(received) == ["s0", "s1", "s2"]
    assert r.llen("coord:{t1}:signal:ch") == 0


def test_signals_are_fifo_and_expire_with_ttl(r):
    for i in range(3):
        signals.send(r, "t1", "ch", str(i), ttl=TTL, max_bytes=MAX)
    assert 0 < r.ttl("coord:{t1}:signal:ch") <= TTL
    assert [signals.wait(r, "t1", "ch", timeout=0) for _ in range(3)] == ["0", "1", "2"]


def test_wait_times_out(r):
    with pytest.raises(TimedOut):
        signals.wait(r, "t1", "ch", timeout=0.2)
    with pytest.raises(TimedOut):
        signals.wait(r, "t1", "ch", timeout=0)


def test_oversized_payload_is_refused_and_nothing_written(r):
    with pytest.raises(InvalidInput):
        signals.send(r, "t1", "ch", "x" * 2000, ttl=TTL, max_bytes=MAX)
    assert r.dbsize() == 0


def test_cli_round_trip_prints_payload_on_stdout(cfn):
    sent = cfn("signal", "send", "--task-id", "t1", "--channel", "agent-complete",
               "--payload", '{"ok": true}')
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == ""
    got = cfn("signal", "wait", "--task-id", "t1", "--channel", "agent-complete",
              "--timeout", "5")
    assert got.returncode == 0, got.stderr
    assert got.stdout == '{"ok": true}\n'


def test_cli_wait_json(cfn):
    cfn("signal", "send", "--task-id", "t1", "--channel", "c", "--payload", "p")
    got = cfn("signal", "wait", "--task-id", "t1", "--channel", "c", "--json")
    assert json.loads(got.stdout) == {"task_id": "t1", "channel": "c", "payload": "p"}


def test_cli_wait_timeout_exits_3_with_nothing_on_stdout(cfn):
    got = cfn("signal", "wait", "--task-id", "t1", "--channel", "c", "--timeout", "0.3")
    assert got.returncode == 3
    assert got.stdout == ""
    assert "within 0.3s" in got.stderr
