"""The portal (`cfn serve`), measured as clients see it, side by side in one run.

(a) event latency: an event appended to a task's stream (XADD, as the loop does) until
    each of C connected socket.io clients (npm's socket.io-client, in node) has it: p50, p95;
(b) requests per second on GET /api/tasks/{T}/status, one client after another, with the C
    socket.io clients connected and without any (the ratio is what they cost).

Run: python benchmarks/web.py [--clients 100] [--events 200] [--requests 500]
Needs node and npm (socket.io-client is installed into a temporary directory).
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from scratch import redis_and_project

TASK = "bench"
CLIENT = r"""
const { io } = require("socket.io-client");
const [url, task, token, count] = process.argv.slice(2);
let ready = 0;
for (let n = 0; n < Number(count); n++) {
  const s = io(`${url}/cfn-loop`, { auth: { taskId: task, token }, transports: ["websocket"] });
  s.on("connect", () => { if (++ready === Number(count)) console.log("ready"); });
  s.on("loop:progress", (d) => console.log(JSON.stringify([Date.now(), d.data.sent])));
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def statuses_per_second(port: int, token: str, requests: int) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for _ in range(requests):
        connection.request("GET", f"/api/tasks/{TASK}/status",
                           headers={"Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200, answer.status
    return requests / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    if not shutil.which("node") or not shutil.which("npm"):
        sys.exit("needs node and npm")
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), args)


def run(root: Path, args) -> None:
    server, sock, project, env = redis_and_project(root)
    cfn = [sys.executable, "-m", "cfn"]
    token = subprocess.run([*cfn, "token", "issue", "--agent-id", "op", "--task-id", TASK,
                            "--role", "operator"], cwd=project, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    from cfn.coordination.decisions import Decision
    from cfn.project import Project

    with Project.open(project, env=env) as opened:  # a task with a status to read
        opened.decide(Decision(TASK, "ITERATE", iteration=1, reason="bench"))
        from cfn.loop import store

        store.ensure_task(opened.db, TASK)
    port = free_port()
    portal = subprocess.Popen([*cfn, "serve", "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    node = None
    try:
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            time.sleep(0.05)
        alone = statuses_per_second(port, token, args.requests)
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                        "socket.io-client@4"], cwd=root, check=True, capture_output=True)
        (root / "client.js").write_text(CLIENT)
        node = subprocess.Popen(["node", "client.js", f"http://127.0.0.1:{port}", TASK, token,
                                 str(args.clients)], cwd=root, stdout=subprocess.PIPE,
                                text=True)
        assert node.stdout.readline().strip() == "ready"
        latencies = events(redis.Redis(unix_socket_path=str(sock)), node, args)
        crowded = statuses_per_second(port, token, args.requests)
    finally:
        for process in (node, portal, server):
            if process is not None:
                process.terminate()
    print(f"event latency, XADD to each of {args.clients} socket.io clients "
          f"({args.events} events, {len(latencies)} deliveries): "
          f"p50 {statistics.median(latencies):.1f} ms, p95 "
          f"{sorted(latencies)[int(len(latencies) * 0.95) - 1]:.1f} ms")
    print(f"GET /api/tasks/{TASK}/status: {alone:.0f} req/s alone, {crowded:.0f} req/s with "
          f"{args.clients} socket.io clients connected ({crowded / alone:.2f}x)")


def events(r: redis.Redis, node: subprocess.Popen, args) -> list[float]:
    """Append events one at a time (each once every client has the one before)."""
    latencies = []
    for _ in range(args.events):
        sent = time.time() * 1000
        r.xadd("coord:{" + TASK + "}:events",
               {"type": "gate", "iteration": "1", "data": json.dumps({"sent": sent})})
        for _ in range(args.clients):
            received, stamp = json.loads(node.stdout.readline())
            latencies.append(received - stamp)
    return latencies


if __name__ == "__main__":
    main()
