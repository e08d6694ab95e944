"""Every benchmark in one run: python -m benchmarks [--quick]

Prints the machine, then each benchmark's table of figures and ratios against its
baseline (redis-cli, the seed's polling design, the busybox image), measured side by side.
docs/performance.md keeps the latest output.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {  # benchmark -> (full arguments, --quick arguments)
    "coordination.py": (["--samples", "200", "--poll-samples", "10", "--runs", "20"],
                        ["--samples", "50", "--poll-samples", "3", "--runs", "5",
                         "--waiters", "1", "20", "--reports", "10", "100"]),
    "agents.py": (["--samples", "10", "--agents", "100"], ["--samples", "3", "--agents", "10"]),
    "loop.py": (["--rounds", "2", "--agents", "5", "20", "50"],
                ["--rounds", "1", "--agents", "5"]),
    "failover.py": (["--samples", "10"], ["--samples", "3", "--keys", "100"]),
    "daemon.py": (["--samples", "20", "--jobs", "200"], ["--samples", "5", "--jobs", "30"]),
    "web.py": (["--clients", "100", "--events", "200", "--requests", "500"],
               ["--clients", "10", "--events", "20", "--requests", "50"]),
    "mcp_server.py": (["--samples", "50"], ["--samples", "5"]),
}


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 ** 2
    return (f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, a smoke run")
    args = parser.parse_args()
    print(f"machine: {machine()}\n", flush=True)
    failed = []
    for script, (full, quick) in RUNS.items():
        print(f"## {script}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick
                                                                      else full)])
        if done.returncode != 0:
            failed.append(script)
        print(flush=True)
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
