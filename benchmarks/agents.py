"""Agent benchmarks, side by side in one run.

(a) time from the spawn call to the agent running, for processes and for
    containers (podman through the docker SDK), against the seed's hope of < 10 s;
(b) 100 process agents at once, each waiting until all of them run: time until they
    all run, time until every completion record is in, and the supervisors' memory (PSS)
    while all of them run; the project's one supervisor against one supervisor per agent
    (each agent in a project of its own), the design before issue 12.

Run: python benchmarks/agents.py [--samples N] [--agents N]
Containers are measured when podman and busybox-static are installed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import start_redis  # noqa: E402
from containers import build_test_image, podman_available, start_api  # noqa: E402

SEED_TARGET_S = 10.0


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


def setup(tmp: Path, redis_sock: Path):
    from cfn import Project

    os.environ.update(REDIS_URL=f"unix://{redis_sock}", CFN_HOME=str(tmp / ".cfn"))
    (tmp / "work").mkdir()
    return Project.open(tmp / "work")


def spawn_latency_ms(project, runtime: str, samples: int, work: Path, label: str = "",
                     **extra) -> list[float]:
    from cfn.agents.spawn import SpawnRequest

    latencies = []
    for i in range(samples):
        marker = work / f"started-{runtime}{label}-{i}"
        if runtime == "process":
            command = ("/bin/sh", "-c", f"date +%s%N > {marker}")
        else:
            command = ("/bin/sh", "-c", f"cat /proc/uptime > /workspace/{marker.name}")
        request = SpawnRequest(agent_id=f"{runtime}{label}-{i}", task_id="bench",
                               profile="script",
                               runtime=runtime, command=command, workspace=work, **extra)
        before_ns, before_up = time.time_ns(), uptime()
        spawned = project.spawn(request)
        project.wait_agents("bench", {spawned.agent_id: spawned.run_id}, timeout=120)
        text = marker.read_text().split()[0]
        if runtime == "process":
            latencies.append((int(text) - before_ns) / 1e6)
        else:
            latencies.append((float(text) - before_up) * 1000)
    return latencies


def many_agents(project_for: Callable[[int], object], count: int, work: Path,
                label: str) -> dict:
    """`count` agents spawned one after another (agent i through `project_for(i)`), each
    writing when it started and then waiting on a FIFO until every one of them runs."""
    from cfn.agents.spawn import SpawnRequest

    fifo = work / f"release-{label}"
    os.mkfifo(fifo)
    started_ns, started = time.time_ns(), time.perf_counter()
    spawned = []
    for i in range(count):
        marker = work / f"up-{label}-{i}"
        command = ("/bin/sh", "-c", f"date +%s%N > {marker}; cat {fifo} > /dev/null; "
                   """echo '{"confidence": 0.9}'""")
        project = project_for(i)
        spawned.append((project, project.spawn(SpawnRequest(
            agent_id=f"{label}-{i}", task_id=f"bench-{label}", profile="script",
            workspace=work, command=command))))
    spawn_s = time.perf_counter() - started
    running_s = (last_start_ns(work, label, count) - started_ns) / 1e9
    pss = pss_mb({s.supervisor_pid for _, s in spawned})
    releasing = threading.Event()
    threading.Thread(target=release, args=(fifo, releasing), daemon=True).start()
    succeeded = 0
    for project, one in spawned:
        waited = project.wait_agents(one.task_id, {one.agent_id: one.run_id}, timeout=300)
        succeeded += waited.all_succeeded
    releasing.set()
    return {"spawn_s": spawn_s, "running_s": running_s, "succeeded": succeeded,
            "all_done_s": time.perf_counter() - started, "pss_mb": pss,
            "supervisors": len({s.supervisor_pid for _, s in spawned})}


def last_start_ns(work: Path, label: str, count: int) -> int:
    """When the last of the agents started (each wrote its start time)."""
    deadline = time.monotonic() + 300
    while True:
        try:
            return max(int((work / f"up-{label}-{i}").read_text()) for i in range(count))
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def release(fifo: Path, done: threading.Event) -> None:
    """Let the agents waiting on `fifo` go: opening it for writing and closing it gives each
    reader end-of-file (repeated for those that opened it later)."""
    while not done.is_set():
        with contextlib.suppress(OSError):  # no reader at this moment
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        time.sleep(0.1)


def pss_mb(pids: set[int]) -> float:
    """The supervisors' memory as PSS (shared pages counted once, split among their
    sharers), which RSS would count once per process."""
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total / 1024


def per_agent_project(tmp: Path, i: int):
    """A project of its own for agent i, so it gets a supervisor of its own: the design
    before issue 12, run on today's code."""
    from cfn import Project

    return Project.open(tmp / "work", env={**os.environ, "CFN_HOME": str(tmp / f"solo-{i}")})


def print_many(count: int, results: dict[str, dict]) -> None:
    print(f"(b) {count} process agents at once     spawned s  all running s  supervisors  "
          "PSS MB  MB/agent  done")
    for name, got in results.items():
        print(f"    {name:<30} {got['spawn_s']:8.2f} {got['running_s']:13.2f} "
              f"{got['supervisors']:11d} {got['pss_mb']:8.0f} {got['pss_mb'] / count:8.2f}  "
              f"{got['succeeded']}/{count}")
    ours, base = results["one supervisor per project"], results["baseline: one per agent"]
    print(f"    ratio baseline / ours: all running {base['running_s'] / ours['running_s']:.1f}x, "
          f"memory {base['pss_mb'] / ours['pss_mb']:.1f}x")
    print("    targets: 100 agents running in <= 1 s; <= 1 MB PSS per agent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        redis_proc, sock = start_redis(tmp / "redis")
        work = tmp / "work"
        try:
            with setup(tmp, sock) as project:
                rows = [("process", spawn_latency_ms(project, "process", args.samples, work))]
                rows += container_rows(project, args.samples, work, tmp)
                print("(a) spawn call -> agent running     p50 ms    max ms   seed target "
                      "10 s / p50")
                for runtime, values in rows:
                    p50 = statistics.median(values)
                    print(f"    {runtime:<30} {p50:9.1f} {max(values):9.1f}   "
                          f"{SEED_TARGET_S * 1000 / p50:8.0f}x")
                print("    targets: process <= 100 ms, container <= 1000 ms")
                print_many(args.agents, {
                    "one supervisor per project": many_agents(
                        lambda _i: project, args.agents, work, "shared"),
                    "baseline: one per agent": many_agents(
                        lambda i: per_agent_project(tmp, i), args.agents, work, "solo")})
        finally:
            redis_proc.terminate()


def container_rows(project, samples: int, work: Path, tmp: Path) -> list:
    if not podman_available() or os.environ.get("BENCH_SKIP_CONTAINERS"):
        print("(a) containers: skipped (podman or busybox-static missing)", file=sys.stderr)
        return []
    api = start_api(tmp / "podman.sock")
    os.environ["DOCKER_HOST"] = f"unix://{tmp / 'podman.sock'}"
    try:
        rows = [("container, busybox test image",
                 spawn_latency_ms(project, "container", samples, work,
                                  image=build_test_image()))]
        from cfn import images

        agent_image = str(project.config.agent_image)
        if images.exists(agent_image):
            work.chmod(0o777)  # the agent image's user is not root
            rows.append((f"container, {agent_image} ({images.size(agent_image) / 1e6:.0f} MB)",
                         spawn_latency_ms(project, "container", samples, work, label="-agent",
                                          image=agent_image)))
        else:
            print(f"(a) {agent_image}: skipped (cfn image build makes it)", file=sys.stderr)
        return rows
    finally:
        api.terminate()
        # only the containers this benchmark made (the runtime removes them; this is in case)
        made = subprocess.run(["podman", "ps", "-aq", "--filter", "label=cfn.task=bench"],
                              capture_output=True, text=True).stdout.split()
        if made:
            subprocess.run(["podman", "rm", "-f", *made], capture_output=True)


if __name__ == "__main__":
    main()
