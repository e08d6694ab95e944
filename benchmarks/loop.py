"""The loop orchestrator's own overhead per iteration, with instant agents.

Five agents per iteration (2 implementers, 2 validators, 1 product owner) that
answer at once. cfn's loop (blocking waits on completion streams) is measured
against the seed's design run on the same agents and supervisors: after each
phase's spawns, poll every agent in turn, sleeping 2 s between checks.

Run: python benchmarks/loop.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from conftest import start_redis  # noqa: E402

SEED_POLL_S = 2.0
SAYS = {"impl": {"confidence": 0.9, "deliverables": ["a.py"]}, "rev": {"confidence": 0.95},
        "po": {"decision": "PROCEED", "reason": "done"}}


def write_profiles(work: Path) -> None:
    (work / "agents").mkdir(parents=True)
    for role, says in SAYS.items():
        literal = json.dumps(says).replace("{", "{{").replace("}", "}}")
        (work / "agents" / f"{role}.toml").write_text(
            f'id = "{role}"\nname = "{role}"\nkind = "scripted"\n'
            f"command = {json.dumps(['/bin/echo', literal])}\n")


def cfn_iteration(project, task: str) -> float:
    from cfn.loop.spec import LoopSpec

    spec = LoopSpec(task_id=task, epic="bench", mode="mvp", loop3_agents=("impl", "impl"),
                    loop2_agents=("rev", "rev"), product_owner="po")
    started = time.perf_counter()
    report = project.run_loop(spec)
    assert report.status == "proceeded", report
    return time.perf_counter() - started


def seed_iteration(project, task: str) -> float:
    """The seed's orchestration: spawn a phase, then poll each agent in turn every 2 s."""
    from cfn import keys
    from cfn.agents.spawn import SpawnRequest, spawn

    started = time.perf_counter()
    for phase, roles in (("loop3", ("impl", "impl")), ("loop2", ("rev", "rev")),
                         ("loop4", ("po",))):
        agents = [f"{phase}-{role}-{i}" for i, role in enumerate(roles)]
        for agent, role in zip(agents, roles, strict=True):
            spawn(project, SpawnRequest(agent, task, profile=role, phase=phase))
        for agent in agents:  # one agent at a time, as wait_for_loop_completion did
            while not any(f.get("agent") == agent for _, f in
                          project.redis.xrange(keys.completion(task, phase))):
                time.sleep(SEED_POLL_S)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from cfn import Project

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        redis_proc, sock = start_redis(tmp / "redis")
        work = tmp / "work"
        write_profiles(work)
        os.environ.update(REDIS_URL=f"unix://{sock}", CFN_HOME=str(tmp / ".cfn"))
        os.chdir(work)
        logging.getLogger("cfn").setLevel(logging.WARNING)  # no per-agent progress lines
        try:
            with Project.open(work) as project:
                ours = [cfn_iteration(project, f"cfn-{i}") for i in range(args.rounds)]
                seed = [seed_iteration(project, f"seed-{i}") for i in range(args.rounds)]
        finally:
            redis_proc.terminate()
    ours_p50, seed_p50 = statistics.median(ours), statistics.median(seed)
    print("one loop iteration, 5 instant agents     p50 s    max s")
    print(f"    cfn loop (blocking waits)          {ours_p50:7.2f}  {max(ours):7.2f}")
    print(f"    seed design (2 s poll per agent)   {seed_p50:7.2f}  {max(seed):7.2f}")
    print(f"    ratio seed / cfn: {seed_p50 / ours_p50:.1f}x   target: cfn <= 0.5 s")


if __name__ == "__main__":
    main()
