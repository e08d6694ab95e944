"""The loop orchestrator's own overhead per iteration, with instant agents.

N agents per iteration (5, 20 and 50 by default: half implementers, the rest
validators and one product owner) that answer at once. A first, unmeasured iteration starts
the project's supervisor (its cost is printed on its own). cfn's loop (blocking waits on
completion streams) is measured against the seed's design run on the same agents and
supervisors: after each phase's spawns, poll every agent in turn, sleeping 2 s between
checks.

Run: python benchmarks/loop.py [--rounds N] [--agents 5 20 50]
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
    (work / "a.py").write_text("")  # the implementers' deliverable: the loop checks it exists
    for role, says in SAYS.items():
        literal = json.dumps(says).replace("{", "{{").replace("}", "}}")
        (work / "agents" / f"{role}.toml").write_text(
            f'id = "{role}"\nname = "{role}"\nkind = "scripted"\n'
            f"command = {json.dumps(['/bin/echo', literal])}\n")


def roles(agents: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(implementers, validators) for an iteration of `agents` agents, the owner included."""
    implementers = max(1, agents // 2)
    return ("impl",) * implementers, ("rev",) * (agents - implementers - 1)


def cfn_iteration(project, task: str, agents: int) -> float:
    from cfn.loop.spec import LoopSpec

    implementers, validators = roles(agents)
    spec = LoopSpec(task_id=task, epic="bench", mode="mvp", loop3_agents=implementers,
                    loop2_agents=validators, product_owner="po")
    started = time.perf_counter()
    report = project.run_loop(spec)
    assert report.status == "proceeded", report
    return time.perf_counter() - started


def seed_iteration(project, task: str, agents: int) -> float:
    """The seed's orchestration: spawn a phase, then poll each agent in turn every 2 s."""
    from cfn import keys
    from cfn.agents.spawn import SpawnRequest, spawn

    started = time.perf_counter()
    implementers, validators = roles(agents)
    for phase, names in (("loop3", implementers), ("loop2", validators), ("loop4", ("po",))):
        ids = [f"{phase}-{role}-{i}" for i, role in enumerate(names)]
        for agent, role in zip(ids, names, strict=True):
            spawn(project, SpawnRequest(agent, task, profile=role, phase=phase))
        for agent in ids:  # one agent at a time, as wait_for_loop_completion did
            while not any(f.get("agent") == agent for _, f in
                          project.redis.xrange(keys.completion(task, phase))):
                time.sleep(SEED_POLL_S)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agents", type=int, nargs="*", default=[5, 20, 50])
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
        print("one loop iteration, instant agents   cfn p50 s   max s   seed p50 s   ratio")
        try:
            with Project.open(work) as project:
                cold = cfn_iteration(project, "cold", 5)  # this one starts the supervisor
                for agents in args.agents:
                    ours = [cfn_iteration(project, f"cfn-{agents}-{i}", agents)
                            for i in range(args.rounds)]
                    seed = [seed_iteration(project, f"seed-{agents}-{i}", agents)
                            for i in range(args.rounds)]
                    ours_p50, seed_p50 = statistics.median(ours), statistics.median(seed)
                    print(f"    {agents:3d} agents                      {ours_p50:8.2f} "
                          f"{max(ours):7.2f}   {seed_p50:9.2f}   {seed_p50 / ours_p50:5.1f}x",
                          flush=True)
        finally:
            redis_proc.terminate()
    print(f"    the first iteration (5 agents), which starts the project's supervisor: "
          f"{cold:.2f} s")
    print("    targets (issue 12): <= 0.3 s at 5 agents, <= 1 s at 50")


if __name__ == "__main__":
    main()
