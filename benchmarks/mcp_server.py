"""`cfn mcp serve` against the CLI, side by side in one run: the same operation (a context
store, then a get) as MCP tool calls on one stdio session, and as `cfn context store|get`
processes (what a model's shell tool would run). Also what the server costs each Claude
agent it runs beside: the time to answer `initialize`, and its resident memory then.

Run: python benchmarks/mcp_server.py (not mcp.py: the name would hide the SDK) [--samples N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from scratch import redis_and_project


def through_mcp(project: Path, env: dict, samples: int) -> list[float]:
    async def run() -> list[float]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "cfn", "mcp",
                                                                     "serve"],
                                       env=env, cwd=str(project))
        took = []
        with open(os.devnull, "w") as quiet:
            async with stdio_client(params, errlog=quiet) as streams, \
                    ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                for n in range(samples + 2):  # two to warm up
                    started = time.perf_counter()
                    await session.call_tool("context_store", {"task_id": "B", "key": "k",
                                                              "value": str(n)})
                    await session.call_tool("context_get", {"task_id": "B", "key": "k"})
                    took.append((time.perf_counter() - started) * 1000)
        return took[2:]

    return anyio.run(run)


def through_cli(project: Path, env: dict, samples: int) -> list[float]:
    took = []
    for n in range(samples):
        started = time.perf_counter()
        for args in (("store", "--value", str(n)), ("get",)):
            subprocess.run([sys.executable, "-m", "cfn", "context", args[0], "--task-id", "B",
                            "--key", "k", *args[1:]], cwd=project, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        took.append((time.perf_counter() - started) * 1000)
    return took


INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "bench", "version": "1"}}}) + "\n"


def server_start(project: Path, env: dict, samples: int) -> tuple[list[float], list[int]]:
    """Milliseconds from starting `cfn mcp serve` to its initialize answer, and its RSS (kB)."""
    took, rss = [], []
    for _ in range(samples):
        started = time.perf_counter()
        server = subprocess.Popen([sys.executable, "-m", "cfn", "mcp", "serve"], cwd=project,
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        server.stdin.write(INITIALIZE)
        server.stdin.flush()
        assert '"result"' in server.stdout.readline()
        took.append((time.perf_counter() - started) * 1000)
        status = Path(f"/proc/{server.pid}/status").read_text()
        rss.append(int(next(line for line in status.splitlines()
                            if line.startswith("VmRSS")).split()[1]))
        server.kill()
        server.wait()
    return took, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, _sock, project, env = redis_and_project(Path(tmp))
        try:
            mcp = through_mcp(project, env, args.samples)
            cli = through_cli(project, env, args.samples)
            starts, rss = server_start(project, env, 5)
        finally:
            server.terminate()
    mcp_p50, cli_p50 = statistics.median(mcp), statistics.median(cli)
    print(f"context store + get, p50 of {args.samples}: MCP tool calls {mcp_p50:.1f} ms, "
          f"CLI processes {cli_p50:.1f} ms (MCP/CLI {mcp_p50 / cli_p50:.2f}x)")
    print(f"cfn mcp serve beside an agent, median of 5: initialize answered after "
          f"{statistics.median(starts):.0f} ms, {statistics.median(rss) / 1024:.0f} MB resident")


if __name__ == "__main__":
    main()
