"""Coordination benchmarks, measured side by side in one run.

(a) wake latency of a blocked `signal wait` after a send, against the seed's
    design (LLEN polled every 2 s);
(b) whole-process time of each hot command (the fast path: no click, no redis-py) against
    `redis-cli LPUSH`, with `cfn signal send` through the full CLI (CFN_FAST_PATH=0) and
    the pieces that make up cfn's cost (interpreter, imports) measured alongside;
(c) N whole-process waiters woken together (1, 100, 1,000): from the send to the last
    waiter's exit, `cfn signal wait` against `redis-cli BLPOP`;
(d) collecting 10, 100 and 1,000 reports: `cfn collect-results` as a whole process (it
    also records them in SQLite) against `redis-cli XRANGE` reading the same stream.

Run: python benchmarks/coordination.py [--samples N]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

from cfn import embedded
from cfn.coordination import signals

POLL_INTERVAL = 2.0  # the seed's wait_for_loop_completion sleeps 2 s between LLEN calls


def start_server(directory: Path) -> tuple[subprocess.Popen, Path]:
    sock = directory / "redis.sock"
    server = shutil.which("redis-server") or embedded.server_binary()
    proc = subprocess.Popen([server, "--port", "0", "--unixsocket", str(sock), "--save", "",
                             "--appendonly", "no", "--dir", str(directory)],
                            stdout=subprocess.DEVNULL)
    while not embedded.accepting(sock):
        time.sleep(0.01)
    return proc, sock


def blocking_wake_ms(sock: Path, samples: int) -> list[float]:
    sender = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    waiter = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    woke: list[float] = []

    def wait_once(channel: str) -> None:
        signals.wait(waiter, "bench", channel, timeout=10)
        woke.append(time.perf_counter())

    latencies = []
    for i in range(samples):
        thread = threading.Thread(target=wait_once, args=(f"c{i}",))
        thread.start()
        while not any(c.get("cmd") in ("blpop", "blmove") for c in sender.client_list()):
            time.sleep(0.0005)  # the waiter is blocked on the server: now send
        sent = time.perf_counter()
        signals.send(sender, "bench", f"c{i}", "x", ttl=60, max_bytes=1024)
        thread.join()
        latencies.append((woke[-1] - sent) * 1000)
    return latencies


def polling_wake_ms(sock: Path, samples: int) -> list[float]:
    """The seed's loop: LLEN, then sleep 2 s; the send lands at a random moment."""
    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    sent: list[float] = []

    def send_later(key: str) -> None:
        time.sleep(random.uniform(0, POLL_INTERVAL))
        sent.append(time.perf_counter())
        client.lpush(key, "x")

    latencies = []
    for i in range(samples):
        key = f"poll:{i}"
        threading.Thread(target=send_later, args=(key,)).start()
        while client.llen(key) == 0:
            time.sleep(POLL_INTERVAL)
        latencies.append((time.perf_counter() - sent[-1]) * 1000)
    return latencies


def process_ms(argv: list[str], runs: int, env: dict | None = None) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        # stderr (progress lines of waits) is not what is measured
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, env=env)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def cfn_command() -> list[str]:
    script = Path(sys.executable).with_name("cfn")  # the console script, not a shell shim
    return [str(script)] if script.exists() else [sys.executable, "-m", "cfn"]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="blocking wake samples")
    parser.add_argument("--poll-samples", type=int, default=5, help="polling samples (~1 s each)")
    parser.add_argument("--runs", type=int, default=20, help="process runs per command")
    parser.add_argument("--waiters", type=int, nargs="*", default=[1, 100, 1000],
                        help="how many waiting processes to wake together")
    parser.add_argument("--reports", type=int, nargs="*", default=[10, 100, 1000],
                        help="how many reports to collect")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = start_server(Path(tmp))
        try:
            report_wake(sock, args)
            report_process(sock, args.runs)
            report_waiters(sock, args.waiters)
            report_collect(sock, args.reports)
        finally:
            proc.terminate()


def report_wake(sock: Path, args) -> None:
    blocking = blocking_wake_ms(sock, args.samples)
    print(f"(a) wake latency after a send, in-process ({args.samples} blocking samples, "
          f"{args.poll_samples} polling samples)", file=sys.stderr)
    polling = polling_wake_ms(sock, args.poll_samples)
    b50, p50 = statistics.median(blocking), statistics.median(polling)
    print("(a) wake latency after send           p50 ms    p95 ms")
    print(f"    cfn signal wait (BLMOVE)       {b50:9.3f} {pct(blocking, 95):9.3f}")
    print(f"    seed: LLEN every 2 s           {p50:9.1f} {max(polling):9.1f}")
    print(f"    ratio polling / blocking (p50)  {p50 / b50:,.0f}x   target: blocking p50 <= 2 ms")


def report_process(sock: Path, runs: int) -> None:
    env = {**os.environ, "REDIS_URL": f"unix://{sock}"}
    full = {**env, "CFN_FAST_PATH": "0"}  # click and redis-py, as every command before
    redis_cli = shutil.which("redis-cli") or str(
        Path(embedded.server_binary()).with_name("redis-cli")
    )
    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    client.rpush("coord:{bench}:signal:w", *["x"] * runs)  # one for each `signal wait` run
    client.set("context:{bench}:k", "v")
    cfn, py = cfn_command(), sys.executable
    task = ["--task-id", "bench"]
    send = [*cfn, "signal", "send", *task, "--channel", "c", "--payload", "x"]
    rows = [
        ("redis-cli LPUSH", [redis_cli, "-s", str(sock), "LPUSH", "bench:cli", "x"], env),
        ("cfn signal send", send, env),
        ("cfn signal wait", [*cfn, "signal", "wait", *task, "--channel", "w"], env),
        ("cfn report", [*cfn, "report", *task, "--agent-id", "a1", "--confidence", "0.9",
                        "--result", '{"ok": true}'], env),
        ("cfn completion signal", [*cfn, "completion", "signal", *task, "--agent-id", "a1"],
         env),
        ("cfn context store", [*cfn, "context", "store", *task, "--key", "k", "--value", "v"],
         env),
        ("cfn context get", [*cfn, "context", "get", *task, "--key", "k"], env),
        ("python -m cfn signal send", [py, "-m", "cfn", *send[len(cfn):]], env),
        ("cfn signal send, CFN_FAST_PATH=0", send, full),
        ("  python3 -c pass (floor)", [py, "-c", "pass"], env),
        ("  python3 -I -S -c pass", [py, "-I", "-S", "-c", "pass"], env),
        ("  python3 -c 'import click'", [py, "-c", "import click"], env),
        ("  python3 -c 'import redis'", [py, "-c", "import redis"], env),
        ("  python3 -c 'import redis, click'", [py, "-c", "import redis, click"], env),
    ]
    print(f"(b) whole-process time, median of {runs} runs", file=sys.stderr)
    measured = {name: process_ms(argv, runs, row_env) for name, argv, row_env in rows}
    base = measured["redis-cli LPUSH"]
    print("(b) whole-process time                median ms   vs redis-cli")
    for name, ms in measured.items():
        print(f"    {name:<34} {ms:8.1f}   {ms / base:6.1f}x")
    print("    target: each hot command (cfn signal send ... context get) <= 60 ms; the fast "
          "path serves them (CFN_FAST_PATH=0: the full CLI)")


def woken_together_ms(sock: Path, argv_for, count: int, client: redis.Redis) -> float:
    """Start `count` waiting processes, send `count` signals at once, and time until the
    last one exited (every process a loop or a script would wait on)."""
    env = {**os.environ, "REDIS_URL": f"unix://{sock}"}
    key = "coord:{bench}:signal:together"
    client.delete(key)
    waiting = [subprocess.Popen(argv_for(), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(count)]
    deadline = time.monotonic() + 120
    while sum(c.get("cmd") in ("blpop", "blmove") for c in client.client_list()) < count:
        assert time.monotonic() < deadline, "the waiters did not all block"
        time.sleep(0.01)
    sent = time.perf_counter()
    client.rpush(key, *["x"] * count)
    for proc in waiting:
        assert proc.wait(timeout=120) == 0
    return (time.perf_counter() - sent) * 1000


def report_waiters(sock: Path, counts: list[int]) -> None:
    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    redis_cli = shutil.which("redis-cli") or str(
        Path(embedded.server_binary()).with_name("redis-cli"))
    cfn_wait = [*cfn_command(), "signal", "wait", "--task-id", "bench", "--channel",
                "together", "--timeout", "120"]
    cli_wait = [redis_cli, "-s", str(sock), "BLPOP", "coord:{bench}:signal:together", "120"]
    print("(c) waiters woken together: send -> last exit   cfn ms   redis-cli ms   ratio")
    for count in counts:
        ours = woken_together_ms(sock, lambda: cfn_wait, count, client)
        theirs = woken_together_ms(sock, lambda: cli_wait, count, client)
        print(f"    {count:4d} waiters                          {ours:8.1f}   {theirs:10.1f}"
              f"   {ours / theirs:5.1f}x")


def report_collect(sock: Path, counts: list[int]) -> None:
    from cfn.coordination import results

    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True)
    redis_cli = shutil.which("redis-cli") or str(
        Path(embedded.server_binary()).with_name("redis-cli"))
    print("(d) collecting N reports, whole process     cfn ms   redis-cli ms   ratio")
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "REDIS_URL": f"unix://{sock}", "CFN_HOME": home}
        for count in counts:
            task = f"collect-{count}"
            for i in range(count):
                results.report(client, task, f"a{i}", confidence=0.9, result={"i": i},
                               ttl=600, max_bytes=1 << 20)
            ours = process_ms([*cfn_command(), "collect-results", "--task-id", task,
                               "--expected", str(count), "--threshold", "1", "--timeout", "0",
                               "--json"], 5, env)
            theirs = process_ms([redis_cli, "-s", str(sock), "XRANGE",
                                 f"coord:{{{task}}}:results", "-", "+"], 5, env)
            print(f"    {count:5d} reports                        {ours:8.1f}   {theirs:10.1f}"
                  f"   {ours / theirs:5.1f}x")


if __name__ == "__main__":
    main()
