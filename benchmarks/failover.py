"""Failover benchmarks (cfn.failover), measured side by side in one run.

(a) what a fallback costs every command: `cfn signal send` as a whole process with
    REDIS_FALLBACK_1 set (it finds the home on both servers) against the same without one;
(b) takeover: a `signal wait` blocked on the primary, the primary SIGKILLed, then a send:
    from the kill to the waiter's exit with the signal, through the fallback;
(c) drain: the primary comes back holding N signals and N reports; the first command's
    time (it moves them all to the fallback, which stayed home) against a command with
    nothing to move.

Run: python benchmarks/failover.py [--samples N] [--keys N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from cfn import embedded


class Server:
    def __init__(self, directory: Path):
        self.directory, self.sock = directory, directory / "s" / "redis.sock"
        self.sock.parent.mkdir(parents=True)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or embedded.server_binary()
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.sock), "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL)
        while not embedded.accepting(self.sock):
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    @property
    def url(self) -> str:
        return f"unix://{self.sock}"


def cfn(env: dict, *args: str, check: bool = True) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cfn", *args], env=env, check=check,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def send(env: dict, channel: str = "c") -> float:
    return cfn(env, "signal", "send", "--task-id", "B", "--channel", channel, "--payload", "x")


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f} ms"


def command_cost(root: Path, samples: int) -> None:
    primary, fallback = Server(root / "p1"), Server(root / "f1")
    primary.start()
    fallback.start()
    base = {**os.environ, "CFN_HOME": str(root / "home1"), "REDIS_URL": primary.url}
    with_fallback = {**base, "REDIS_FALLBACK_1": fallback.url}
    click = {**base, "CFN_FAST_PATH": "0"}
    send(with_fallback)
    rows = {"no fallback, fast path": [], "no fallback, click": [], "with a fallback": []}
    for _ in range(samples):  # interleaved, so drift hits all alike
        rows["no fallback, fast path"].append(send(base))
        rows["no fallback, click"].append(send(click))
        rows["with a fallback"].append(send(with_fallback))
    print("(a) `cfn signal send`, whole process, median of", samples)
    for name, values in rows.items():
        print(f"    {name:24} {ms(values)}")
    ratio = statistics.median(rows["with a fallback"]) / statistics.median(
        rows["no fallback, click"])
    print(f"    a fallback costs {ratio:.2f}x the same (click) path without one")
    primary.kill()
    fallback.kill()


def takeover(root: Path, samples: int) -> None:
    times = []
    for i in range(samples):
        primary, fallback = Server(root / f"p2-{i}"), Server(root / f"f2-{i}")
        primary.start()
        fallback.start()
        env = {**os.environ, "CFN_HOME": str(root / f"home2-{i}"), "REDIS_URL": primary.url,
               "REDIS_FALLBACK_1": fallback.url}
        send(env, "warm")
        waiter = subprocess.Popen([sys.executable, "-m", "cfn", "signal", "wait", "--task-id",
                                   "B", "--channel", "c", "--timeout", "60"], env=env,
                                  stdout=subprocess.PIPE, text=True)
        watch = redis.Redis(unix_socket_path=str(primary.sock), decode_responses=True)
        while not any(c.get("cmd") == "blmove" for c in watch.client_list()):
            time.sleep(0.005)
        watch.close()
        killed = time.perf_counter()
        primary.kill()
        send(env)
        out, _ = waiter.communicate(timeout=60)
        assert out == "x\n", out
        times.append((time.perf_counter() - killed) * 1000)
        fallback.kill()
    print(f"(b) takeover, primary SIGKILLed under a blocked wait, to the waiter's exit: "
          f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms "
          f"({samples} runs)")


def drain(root: Path, count: int) -> None:
    primary, fallback = Server(root / "p3"), Server(root / "f3")
    primary.start()
    fallback.start()
    env = {**os.environ, "CFN_HOME": str(root / "home3"), "REDIS_URL": primary.url,
           "REDIS_FALLBACK_1": fallback.url}
    send(env, "warm")
    p = redis.Redis(unix_socket_path=str(primary.sock))
    pipe = p.pipeline(transaction=False)
    for i in range(count):
        pipe.rpush(f"coord:{{B{i % 100}}}:signal:c", f"s{i}")
        pipe.xadd(f"coord:{{B{i % 100}}}:results", {"agent": f"a{i}", "status": "success"})
    pipe.execute()
    p.close()
    primary.kill()
    send(env)  # the fallback takes over
    primary.start()
    moving = cfn(env, "context", "get", "--task-id", "B", "--key", "k", check=False)
    idle = cfn(env, "context", "get", "--task-id", "B", "--key", "k", check=False)
    f = redis.Redis(unix_socket_path=str(fallback.sock))
    moved = sum(f.llen(f"coord:{{B{i}}}:signal:c") for i in range(100))
    assert moved == count, moved
    print(f"(c) drain of {count} signals and {count} reports in {2 * count // 100} keys: "
          f"first command {moving:.0f} ms, the next (nothing to move) {idle:.0f} ms")
    f.close()
    primary.kill()
    fallback.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--keys", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cfn-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        command_cost(root, args.samples)
        takeover(root, max(3, args.samples // 2))
        drain(root, args.keys)


if __name__ == "__main__":
    main()
