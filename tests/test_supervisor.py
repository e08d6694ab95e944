"""The project's one supervisor: many agents in one process, started on demand, leaving when
idle, and taking its agents with it when it dies."""

import json
import os
import signal
import sys
import time

import pytest

from cfn import keys
from test_agents import heartbeat, spawn, wait

pytestmark = pytest.mark.usefixtures("reap_supervisors")


def gone(pid: int, within: float = 15) -> bool:
    """True once `pid` no longer runs (reaped, or a zombie of a dead parent)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def test_agents_of_a_project_share_one_supervisor(cfn, r):
    first = spawn(cfn, "a-1", "T1", "sleep", "30")
    second = spawn(cfn, "a-2", "T1", "sleep", "30")
    other_task = spawn(cfn, "a-1", "T2", "sleep", "30")
    assert first["supervisor_pid"] == second["supervisor_pid"] == other_task["supervisor_pid"]
    beats = [heartbeat(r, task, agent) for task, agent in
             (("T1", "a-1"), ("T1", "a-2"), ("T2", "a-1"))]
    assert {beat["supervisor_pid"] for beat in beats} == {first["supervisor_pid"]}
    assert len({beat["handle"] for beat in beats}) == 3  # three agents, one supervisor


def test_stopping_one_agent_leaves_the_others_running(cfn, r):
    spawn(cfn, "stay-1", "T1", "sleep", "30")
    spawn(cfn, "go-1", "T1", "sleep", "30")
    stay = heartbeat(r, "T1", "stay-1")
    heartbeat(r, "T1", "go-1")
    assert cfn("agents", "stop", "go-1", "--task-id", "T1").returncode == 0
    code, waited = wait(cfn, "T1", "go-1")
    assert waited["records"]["go-1"]["status"] == "stopped"
    assert not gone(int(stay["handle"]), within=1)  # still running
    assert heartbeat(r, "T1", "stay-1")["handle"] == stay["handle"]


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_a_killed_supervisor_takes_its_agents_with_it_and_is_recorded(cfn, r, sandbox):
    env = {"CFN_AGENT_SANDBOX": sandbox}
    spawned = spawn(cfn, "orphan-1", "T1", "sleep", "300", env=env)
    beat = heartbeat(r, "T1", "orphan-1")
    os.kill(spawned["supervisor_pid"], signal.SIGKILL)
    assert gone(int(beat["handle"]))  # no orphan: the agent died with its supervisor
    # the next spawn starts a new supervisor, which records what the dead one left running
    later = spawn(cfn, "later-1", "T1", sys.executable, "-c", "pass", env=env)
    assert later["supervisor_pid"] != spawned["supervisor_pid"]
    code, waited = wait(cfn, "T1", "orphan-1", timeout="5", env=env)
    assert code == 1 and waited["records"]["orphan-1"]["status"] == "lost"
    # reported failed, as any agent that ended without a report of its own
    (fields,) = [f for _, f in r.xrange("coord:{T1}:results") if f["agent"] == "orphan-1"]
    assert fields["status"] == "failure"
    assert not r.exists(keys.heartbeat("T1", "orphan-1"))  # respawnable at once
    assert not [u for u in r.acl_users() if u.startswith("cfn-T1-orphan-1")]
    assert not leftovers("sleep 300")


def test_sigterm_stops_every_agent_with_its_record(cfn, r):
    spawned = spawn(cfn, "t-1", "T1", "sleep", "300")
    spawn(cfn, "t-2", "T1", "sleep", "300")
    heartbeat(r, "T1", "t-1")
    heartbeat(r, "T1", "t-2")
    os.kill(spawned["supervisor_pid"], signal.SIGTERM)
    code, waited = wait(cfn, "T1", "t-1", "t-2")
    assert {rec["status"] for rec in waited["records"].values()} == {"stopped"}
    assert gone(spawned["supervisor_pid"])


def test_an_idle_supervisor_leaves_and_the_next_spawn_starts_another(cfn, project):
    env = {"CFN_SUPERVISOR_IDLE_S": "1"}
    first = spawn(cfn, "q-1", "T1", sys.executable, "-c", "pass", env=env)
    assert wait(cfn, "T1", "q-1")[0] == 0
    assert gone(first["supervisor_pid"], within=15)
    second = spawn(cfn, "q-2", "T1", sys.executable, "-c", "pass", env=env)
    assert second["supervisor_pid"] != first["supervisor_pid"]
    assert wait(cfn, "T1", "q-2")[0] == 0
    log = (project / ".cfn" / "supervisor" / "supervisor.log").read_text()
    assert log.count("serving") == 2


def test_the_supervisor_socket_is_the_operators_alone(cfn, project):
    spawn(cfn, "p-1", "T1", sys.executable, "-c", "pass")
    assert wait(cfn, "T1", "p-1")[0] == 0
    directory = project / ".cfn" / "supervisor"
    assert directory.stat().st_mode & 0o777 == 0o700
    assert (directory / "supervisor.log").stat().st_mode & 0o777 == 0o600


def test_concurrent_first_spawns_start_one_supervisor(cfn, project, env):
    import subprocess

    procs = [subprocess.Popen(
        [sys.executable, "-m", "cfn", "spawn-agent", f"c-{i}", "T1", "--profile", "script",
         "--json", "--", sys.executable, "-c", "pass"], cwd=project, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    pids = {json.loads(out)["supervisor_pid"] for out, _ in outputs}
    assert len(pids) == 1
    assert wait(cfn, "T1", *(f"c-{i}" for i in range(6)))[0] == 0


def leftovers(marker: str) -> list[str]:
    import subprocess

    return [line for line in subprocess.run(["ps", "-eo", "stat,args"], capture_output=True,
                                            text=True).stdout.splitlines()
            if marker in line and not line.startswith("Z")]


@pytest.mark.parametrize("sandbox", ["on", "off"])
def test_what_an_agent_leaves_behind_ends_with_it(cfn, r, sandbox):
    env = {"CFN_AGENT_SANDBOX": sandbox}
    spawn(cfn, "bg-1", "T1", "/bin/sh", "-c", "sleep 3031 & echo started", env=env)
    assert wait(cfn, "T1", "bg-1", env=env)[0] == 0
    killed = spawn(cfn, "bg-2", "T1", "/bin/sh", "-c", "sleep 3032", env=env)
    os.kill(int(heartbeat(r, "T1", "bg-2")["handle"]), signal.SIGKILL)  # at once: no grace
    assert wait(cfn, "T1", "bg-2", env=env)[0] == 1 and killed
    end = time.monotonic() + 10
    while (left := leftovers("sleep 303")) and time.monotonic() < end:
        time.sleep(0.1)
    assert not left


def test_projects_sharing_a_redis_keep_each_runs_record(cfn, r, project):
    """Run IDs are each project's own: two projects' run 1 of the same agent are two runs."""
    for home in ("one", "two"):
        env = {"CFN_HOME": str(project / home)}
        spawn(cfn, "same-1", "T1", sys.executable, "-c", "pass", env=env)
        assert wait(cfn, "T1", "same-1", env=env)[0] == 0
    assert r.xlen("coord:{T1}:complete") == 2 and r.xlen("coord:{T1}:results") == 2


def test_records_a_dead_supervisor_left_in_sqlite_only_are_published(cfn, r, project):
    """The supervisor records a run in SQLite, Redis refuses its records (out of memory) and
    the supervisor dies: the next process that waits publishes them from SQLite, phase
    stream included, so the loop's barrier is met rather than timed out."""
    import sqlite3

    spawned = spawn(cfn, "late-1", "T1", "sleep", "1", extra=("--phase", "loop3"))
    heartbeat(r, "T1", "late-1")
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", "1")  # writes refused, reads served
    try:
        db = sqlite3.connect(project / ".cfn" / "cfn.db")
        deadline = time.monotonic() + 20
        while db.execute("SELECT status FROM agents WHERE agent_id = 'late-1'").fetchone()[0] \
                != "success":
            assert time.monotonic() < deadline, "the run was never recorded"
            time.sleep(0.05)
        os.kill(spawned["supervisor_pid"], signal.SIGKILL)
    finally:
        r.config_set("maxmemory", "0")
    assert not r.exists("coord:{T1}:loop3:complete")  # Redis never had it
    code, waited = wait(cfn, "T1", "late-1", timeout="30")
    assert code == 0 and waited["records"]["late-1"]["status"] == "success"
    assert r.xlen("coord:{T1}:loop3:complete") == 1
    assert [f["agent"] for _, f in r.xrange("coord:{T1}:results")] == ["late-1"]
    assert not [u for u in r.acl_users() if u.startswith("cfn-T1-late-1")]
    assert db.execute("SELECT outbox FROM agents").fetchall() == [(None,)]


def test_a_run_whose_supervisor_lives_is_not_lost_when_its_heartbeat_lapses(cfn, r):
    """A fresh process after a Redis outage finds no heartbeat (it lapsed meanwhile), but the
    supervisor still runs: the agent is running, not lost."""
    spawned = spawn(cfn, "calm-1", "T1", "sleep", "30")
    heartbeat(r, "T1", "calm-1")
    os.kill(spawned["supervisor_pid"], signal.SIGSTOP)  # no heartbeat until it continues
    try:
        r.delete(keys.heartbeat("T1", "calm-1"))
        got = cfn("agents", "ls", "--task-id", "T1", "--json")
        assert got.returncode == 0, got.stderr
        assert [row["status"] for row in json.loads(got.stdout)] == ["running"]
    finally:
        os.kill(spawned["supervisor_pid"], signal.SIGCONT)
    assert cfn("agents", "stop", "calm-1", "--task-id", "T1").returncode == 0
