"""The load suite (issue 13): 200 agents under the real supervisor sending 10 signals and a
report each, 1,000 results collected in one `cfn collect-results`, and the orchestrator's
memory over a 50-iteration loop. Bounded to a few minutes on 2 cores; every wait has a
generous deadline and nothing asserts on speed (benchmarks/ measures that)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from cfn import Project
from cfn.agents.spawn import SpawnRequest
from cfn.errors import TimedOut
from cfn.loop.engine import Iteration, Loop
from cfn.loop.spec import LoopSpec

pytestmark = pytest.mark.usefixtures("reap_supervisors")
AGENTS, SIGNALS, RESULTS, ITERATIONS = 200, 10, 1000, 50
CFN = f"{sys.executable} -m cfn"
# each agent is a shell script of real `cfn` commands, the way an agent's skills run them
SENDER = (f'for i in $(seq {SIGNALS}); do {CFN} signal send --task-id load --channel inbox '
          f'--payload "$CFN_AGENT_ID:$i" || exit 1; done; '
          f'{CFN} report --task-id load --agent-id "$CFN_AGENT_ID" --confidence 0.9 '
          f'--result \'{{"sent": {SIGNALS}}}\'')


@pytest.fixture
def opened(project, env):
    with Project.open(project, env=env) as p:
        yield p


def test_200_agents_each_send_10_signals_and_a_report_all_arrive_exactly_once(opened, cfn):
    """200 process agents under the project's supervisor, 2,200 `cfn` processes in all,
    drained by four concurrent waiters while they send."""
    runs = {f"a{i}": opened.spawn(SpawnRequest(
        agent_id=f"a{i}", task_id="load", profile="script", command=("/bin/sh", "-c", SENDER),
        workspace=opened.root)).run_id for i in range(AGENTS)}
    received = drain(opened, "load", "inbox", AGENTS * SIGNALS)
    waited = opened.wait_agents("load", runs, timeout=300)
    assert waited.all_succeeded, {a: r for a, r in waited.records.items()
                                  if r.get("status") != "success"}

    expected = Counter(f"a{i}:{n}" for i in range(AGENTS) for n in range(1, SIGNALS + 1))
    assert Counter(received) == expected  # every signal once: none lost, none twice
    with pytest.raises(TimedOut):  # and nothing left behind
        opened.wait_signal("load", "inbox", timeout=1)
    got = cfn("collect-results", "--task-id", "load", "--expected", str(AGENTS),
              "--threshold", "0.9", "--timeout", "60", "--json")
    assert got.returncode == 0, got.stderr
    reports = json.loads(got.stdout)["results"]
    assert sorted(rep["agent_id"] for rep in reports) == sorted(runs)
    assert {rep["result"]["sent"] for rep in reports} == {SIGNALS}


def drain(project: Project, task_id: str, channel: str, count: int) -> list[str]:
    """`count` signals taken by four waiters at once (each its own connection)."""
    taken: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 300

    def wait() -> None:
        with Project.open(project.root, env=os.environ | {
                "REDIS_URL": project.redis_url, "CFN_HOME": str(project.home)}) as own:
            while len(taken) < count and time.monotonic() < deadline:
                try:
                    payload = own.wait_signal(task_id, channel, timeout=1)
                except TimedOut:
                    continue
                with lock:
                    taken.append(payload)

    waiters = [threading.Thread(target=wait) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    for waiter in waiters:
        waiter.join()
    return taken


def test_1000_results_are_collected_by_one_collect_results(opened, project, env):
    collector = subprocess.Popen(
        [sys.executable, "-m", "cfn", "collect-results", "--task-id", "many", "--expected",
         str(RESULTS), "--threshold", "0.5", "--timeout", "120", "--json"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for i in range(RESULTS):  # while it waits
        opened.report("many", f"r{i}", confidence=0.5 + (i % 2) * 0.4, result={"n": i})
    out, err = collector.communicate(timeout=180)
    assert collector.returncode == 0, err
    collected = json.loads(out)
    assert (collected["count"], collected["mean_confidence"]) == (RESULTS, pytest.approx(0.7))
    assert sorted(rep["result"]["n"] for rep in collected["results"]) == list(range(RESULTS))
    assert len(opened.history("many")["results"]) == RESULTS  # each recorded once


class MeasuredLoop(Loop):
    """The loop engine, noting the orchestrator's memory after some iterations."""

    def __init__(self, *args, at: tuple[int, ...]):
        super().__init__(*args)
        self.at, self.memory = at, {}

    def iteration(self, number: int, feedback: list[str]) -> Iteration:
        done = super().iteration(number, feedback)
        if number in self.at:
            gc.collect()
            self.memory[number] = {"traced": tracemalloc.get_traced_memory()[0],
                                   "rss": _status_kb("VmRSS") * 1024,
                                   "fds": len(os.listdir("/proc/self/fd"))}
        return done


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(f"{field}:"))
    return int(line.split()[1])


def scripted(project: Path, name: str, script: str) -> None:
    """A profile running `script` in sh (braces doubled: the command is a template)."""
    command = json.dumps(["/bin/sh", "-c", script.replace("{", "{{").replace("}", "}}")])
    (project / "agents" / f"{name}.toml").write_text(
        f'id = "{name}"\nname = "{name}"\nkind = "scripted"\ntimeout = 60\n'
        f"command = {command}\n")


# Growth allowed from iteration 5 to 50, in bytes of Python allocations. What the loop keeps
# by design is an Iteration per decision (about 1 KB with its feedback: 45 KB); the rest
# is caches that fill once (SQLite statements, regexes, redis-py's). A leak of one phase's
# records, a stream read or a connection per iteration is 10 KB or more each time, 450 KB or
# more over 45 iterations, so it fails this bound.
LOOP_GROWTH_BOUND = 256 * 1024


def test_the_orchestrators_memory_stays_flat_over_a_50_iteration_loop(opened, project):
    (project / "agents").mkdir()
    (project / "app.py").write_text("")
    scripted(project, "impl", """echo '{"confidence": 0.9, "deliverables": ["app.py"]}'""")
    scripted(project, "rev", """echo '{"confidence": 0.95, "feedback": "fine"}'""")
    scripted(project, "po", f"""if [ "$CFN_ITERATION" -ge {ITERATIONS} ]; \
then echo '{{"decision": "PROCEED", "reason": "done"}}'; \
else echo '{{"decision": "ITERATE", "reason": "once more"}}'; fi""")
    spec = LoopSpec(task_id="long", epic="flat memory", mode="mvp", loop3_agents=("impl",),
                    loop2_agents=("rev",), product_owner="po", max_iterations=ITERATIONS)
    tracemalloc.start()
    try:
        loop = MeasuredLoop(opened, spec, at=(5, ITERATIONS))
        report = loop.run()
    finally:
        tracemalloc.stop()
    assert (report.status, len(report.iterations)) == ("proceeded", ITERATIONS)
    early, late = loop.memory[5], loop.memory[ITERATIONS]
    growth = late["traced"] - early["traced"]
    print(f"orchestrator at iteration 5 / {ITERATIONS}: traced {early['traced'] / 1024:.0f} / "
          f"{late['traced'] / 1024:.0f} KiB, RSS {early['rss'] / 2**20:.1f} / "
          f"{late['rss'] / 2**20:.1f} MiB, fds {early['fds']} / {late['fds']}")
    assert growth < LOOP_GROWTH_BOUND, (early, late)
    assert late["fds"] <= early["fds"]  # no descriptor left open per iteration
