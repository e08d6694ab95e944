"""Agent benchmarks, side by side in one run.

(a) time from the spawn call to the agent running, for processes and for
    containers (podman through the docker SDK), against the seed's hope of < 10 s;
(b) 100 agents at once on this machine (each lives 20 s, longer than spawning all
    of them takes): spawn time, time until every completion record is in, and the
    supervisors' memory while all of them run.

Run: python benchmarks/agents.py [--samples N] [--agents N]
Containers are measured when podman and busybox-static are installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import start_redis  # noqa: E402
from containers import build_test_image, podman_available, start_api  # noqa: E402

SEED_TARGET_S = 10.0
LIFETIME_S = 20


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


def many_agents(project, count: int, work: Path) -> dict:
    from cfn.agents.spawn import SpawnRequest

    started = time.perf_counter()
    run_ids, pids = {}, []
    for i in range(count):
        request = SpawnRequest(
            agent_id=f"many-{i}", task_id="bench-many", profile="script", workspace=work,
            command=("/bin/sh", "-c", f'sleep {LIFETIME_S}; echo "{{\\"confidence\\": 0.9}}"'))
        spawned = project.spawn(request)
        run_ids[spawned.agent_id], _ = spawned.run_id, pids.append(spawned.supervisor_pid)
    spawned_s = time.perf_counter() - started
    peak_pss = max_pss_mb(pids, until=time.perf_counter() + 3)
    waited = project.wait_agents("bench-many", run_ids, timeout=300)
    return {"spawn_s": spawned_s, "all_done_s": time.perf_counter() - started,
            "succeeded": sum(rec.get("status") == "success" for rec in waited.records.values()),
            "peak_pss_mb": peak_pss}


def max_pss_mb(pids: list[int], until: float) -> float:
    """The supervisors' peak memory as PSS (shared pages counted once, split among their
    sharers), which RSS would count once per process."""
    peak = 0.0
    while time.perf_counter() < until:
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        peak = max(peak, total / 1024)
        time.sleep(0.2)
    return peak


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
                many = many_agents(project, args.agents, work)
                print(f"(b) {args.agents} agents at once (each lives {LIFETIME_S} s): spawned in "
                      f"{many['spawn_s']:.1f} s, all completions in {many['all_done_s']:.1f} s, "
                      f"{many['succeeded']}/{args.agents} succeeded, supervisors' peak PSS "
                      f"{many['peak_pss_mb']:.0f} MB ({many['peak_pss_mb'] / args.agents:.1f} "
                      "MB each)")
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
