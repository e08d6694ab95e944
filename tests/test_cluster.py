"""cfn on a real Redis Cluster (three masters, three replicas, on loopback): found without a
setting, the primitives, agents and a whole loop run unchanged, the hot commands' fast path
hands a cluster to the full path without running anything twice, and a blocked wait rides
out its master's failover."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from redis.cluster import RedisCluster

from cfn import keys
from cfn.coordination import agents
from cfn.hiredis_client import Client, RedisError
from cfn.project import Project
from cluster import start_cluster
from conftest import REPO

pytestmark = pytest.mark.usefixtures("reap_supervisors")
FAKE_AGENT = REPO / "tests" / "fake_agent.py"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = start_cluster(tmp_path_factory.mktemp("cluster"))
    yield started
    started.stop()


@pytest.fixture
def r(cluster) -> RedisCluster:
    """A cluster client, every master flushed (conftest's `r` is the single test server)."""
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def env(project, cluster, r) -> dict[str, str]:
    """`cfn` processes on the cluster: REDIS_URL is one node's, as a user would set it."""
    return {**os.environ, "REDIS_URL": cluster.url, "CFN_HOME": str(project / ".cfn")}


def tasks_on_each_master(cluster, count: int = 3) -> list[str]:
    """Task IDs whose keys live on `count` different masters."""
    by_owner: dict[int, str] = {}
    for n in range(100):
        by_owner.setdefault(cluster.owner(keys.results(f"T{n}")).port, f"T{n}")
        if len(by_owner) == count:
            return list(by_owner.values())
    raise AssertionError("the slots are not spread over the masters")


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_cluster_is_found_without_a_setting_from_any_node(project, cluster):
    for role in ("master", "slave"):
        node = next(n for n in cluster.live() if cluster.role(n) == role)
        with Project.open(project, redis_url=node.url) as opened:
            assert isinstance(opened.redis, RedisCluster)
            assert len(opened.redis.get_primaries()) == 3


def test_every_primitive_runs_unchanged_on_each_master(cfn, cluster, r):
    for task in tasks_on_each_master(cluster):
        ok(cfn("context", "store", "--task-id", task, "--key", "k", "--value", f"v-{task}"))
        assert ok(cfn("context", "get", "--task-id", task, "--key", "k")) == f"v-{task}\n"
        assert ok(cfn("context", "list", "--task-id", task)) == "k\n"
        ok(cfn("signal", "send", "--task-id", task, "--channel", "go", "--payload", "p1"))
        assert ok(cfn("signal", "wait", "--task-id", task, "--channel", "go",
                      "--timeout", "5")) == "p1\n"
        for agent, confidence in (("a1", "0.9"), ("a2", "0.8")):
            ok(cfn("report", "--task-id", task, "--agent-id", agent,
                   "--confidence", confidence))
            ok(cfn("completion", "signal", "--task-id", task, "--agent-id", agent,
                   "--phase", "loop3"))
        collected = json.loads(ok(cfn("collect-results", "--task-id", task, "--expected", "2",
                                      "--threshold", "1", "--timeout", "5", "--json")))
        assert (collected["met"], round(collected["mean_confidence"], 2)) == (True, 0.85)
        waited = json.loads(ok(cfn("completion", "wait", "--task-id", task, "--expected",
                                   "2", "--phase", "loop3", "--timeout", "5", "--json")))
        assert sorted(waited["agents"]) == ["a1", "a2"]
        lock = json.loads(ok(cfn("lock", "acquire", "--task-id", task, "--name", "deploy",
                                 "--ttl", "30", "--json")))
        assert cfn("lock", "acquire", "--task-id", task, "--name", "deploy",
                   "--ttl", "30").returncode == 1  # held
        ok(cfn("lock", "extend", "--task-id", task, "--name", "deploy",
               "--token", lock["token"], "--ttl", "60"))
        ok(cfn("lock", "release", "--task-id", task, "--name", "deploy",
               "--token", lock["token"]))
        ok(cfn("decision", "set", "--task-id", task, "--decision", "PROCEED",
               "--reason", "on a cluster"))
        assert json.loads(ok(cfn("decision", "get", "--task-id", task, "--json")))[
            "decision"] == "PROCEED"
    # each task's keys are on its own master, all in its one slot
    for task in tasks_on_each_master(cluster):
        owner = cluster.owner(keys.results(task))
        with owner.client() as node:
            assert node.exists(keys.results(task), keys.context(task, "k"),
                               keys.decision(task)) == 3


def test_the_fast_path_hands_a_cluster_to_the_full_path_and_sends_once(cfn, cluster, r):
    for task in tasks_on_each_master(cluster):
        sent = cfn("signal", "send", "--task-id", task, "--channel", "c", "--payload", "x",
                   extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
        assert sent.returncode == 0, sent.stderr
        assert "redis.cluster" in sent.stderr  # served by the full path
        assert r.lrange(keys.signal(task, "c"), 0, -1) == ["x"]


def test_a_redirected_first_command_counts_as_not_sent(cluster, r):
    """The small client's own rule (for a server whose handshake does not say "cluster"):
    a node that answers MOVED ran nothing, so the full path may send it again."""
    key = keys.signal(tasks_on_each_master(cluster)[0], "c")
    owner = cluster.owner(key)
    client = Client.connect(cluster.other_master(owner).url, username=None, password=None,
                            connect_timeout=5, socket_timeout=5)
    assert client.cluster
    with pytest.raises(RedisError) as refused:
        client.pipeline().rpush(key, "x").expire(key, 60).execute()
    assert refused.value.code == "MOVED" and not client.sent
    assert r.llen(key) == 0
    client.close()
    client = Client.connect(owner.url, username=None, password=None,
                            connect_timeout=5, socket_timeout=5)
    assert client.pipeline().rpush(key, "x").expire(key, 60).execute() == [1, True]
    assert client.sent  # it ran: never to be sent again
    client.close()


def test_agent_users_live_on_every_node(project, cluster):
    with Project.open(project, redis_url=cluster.url) as opened:
        user = agents.create_user(opened.redis, "T1", "a1")
        every = cluster.live()
        assert len(every) == 6  # masters and replicas
        for node in every:
            with node.client() as client:
                assert user.username in client.acl_users(), node.port
        agents.delete_user(opened.redis, user.username)
        for node in every:
            with node.client() as client:
                assert user.username not in client.acl_users(), node.port


def test_an_agent_reaches_the_cluster_as_its_own_user(cfn, cluster, r):
    script = (
        "import subprocess, sys\n"
        "def cfn(*a): return subprocess.run([sys.executable, '-m', 'cfn', *a]).returncode\n"
        "codes = [cfn('context', 'store', '--task-id', t, '--key', 'k', '--value', 'mine')\n"
        "         for t in sys.argv[1:]]\n"
        "codes.append(cfn('signal', 'send', '--task-id', sys.argv[1], '--channel', 'done'))\n"
        "print('{\"confidence\": 1.0, \"deliverables\": %s}' % codes)\n"
    )
    own, other, _ = tasks_on_each_master(cluster)
    got = cfn("spawn-agent", "acl-1", own, "--profile", "script", "--json", "--",
              sys.executable, "-c", script, own, other)
    assert got.returncode == 0, got.stderr
    waited = json.loads(ok(cfn("agents", "wait", "--task-id", own, "--timeout", "60",
                               "--json")))
    assert waited["records"]["acl-1"]["deliverables"] == [0, 4, 0]  # its task only
    assert r.get(keys.context(own, "k")) == "mine" and r.get(keys.context(other, "k")) is None
    assert r.llen(keys.signal(own, "done")) == 1
    deadline = time.monotonic() + 20  # its supervisor removes the user, then its claim
    while r.exists(keys.heartbeat(own, "acl-1")):
        assert time.monotonic() < deadline, "the supervisor never released the agent"
        time.sleep(0.05)
    for node in cluster.live():  # by then its user is gone from every node
        with node.client() as client:
            assert not [u for u in client.acl_users() if u.startswith(f"cfn-{own}-acl-1")]


def test_a_whole_loop_runs_on_a_cluster(cfn, project, r):
    (project / "fake_agent.py").write_text(FAKE_AGENT.read_text())
    (project / "agents").mkdir()
    plans = {"impl": {"*": {"confidence": 0.9, "deliverables": ["app.py"]}},
             "rev": {"*": {"confidence": 0.95}}, "qa": {"*": {"confidence": 0.95}},
             "po": {"*": {"decision": "PROCEED", "reason": "criteria met"}}}
    for name, plan in plans.items():
        literal = json.dumps(plan).replace("{", "{{").replace("}", "}}")
        command = json.dumps([sys.executable, str(project / "fake_agent.py"), literal])
        (project / "agents" / f"{name}.toml").write_text(
            f'id = "{name}"\nname = "{name}"\nkind = "scripted"\ntimeout = 60\n'
            f"command = {command}\n")
    got = cfn("loop", "run", "--task-id", "L1", "--epic", "Add a greeting", "--mode", "mvp",
              "--loop3-agents", "impl", "--loop2-agents", "rev,qa", "--product-owner", "po",
              "--json", timeout=300)
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert (report["status"], len(report["iterations"])) == ("proceeded", 1)
    assert json.loads(r.get(keys.decision("L1")))["decision"] == "PROCEED"
    assert r.xlen(keys.completion("L1", "loop3")) == 1
    assert r.llen(keys.signal("L1", "start-loop2")) == 2


def test_a_blocked_wait_rides_out_a_failover_of_its_master(cfn, tmp_path_factory, project):
    """SIGKILL the master serving a blocked `signal wait`: its replica is promoted and the
    wait still gets the signal sent after the failover, within its timeout. The wait runs
    as an agent's ACL user, which the promoted replica knows. A send made while the slot
    has no master waits for the promotion, and lands once."""
    fresh = start_cluster(tmp_path_factory.mktemp("failover"))  # this one loses a node
    waiter = during = None
    try:
        with Project.open(project, redis_url=fresh.url) as admin:
            # made before anything was written: the replicas are not in redis-py's slot map
            user = agents.create_user(admin.redis, "F1", "w1")
        owner = fresh.owner(keys.signal("F1", "go"))
        waiter = cfn_process(project, owner, "signal", "wait", "--task-id", "F1", "--channel",
                             "go", "--timeout", "60",  # told of the very node that dies
                             env={"REDIS_USERNAME": user.username,
                                  "REDIS_PASSWORD": user.password})
        blocked_on(owner, waiter)
        owner.kill()
        killed = time.monotonic()
        during = cfn_process(project, fresh.other_master(owner), "signal", "send", "--task-id",
                             "F1", "--channel", "also", "--payload", "during")
        fresh.wait_healthy()
        promoted = time.monotonic()
        assert fresh.owner(keys.signal("F1", "go")) is not owner
        assert during.wait(timeout=60) == 0, during.stderr.read()
        sent_during = time.monotonic()
        ok(cfn("signal", "send", "--task-id", "F1", "--channel", "go", "--payload", "after",
               extra_env={"REDIS_URL": fresh.other_master(owner).url}))
        sent = time.monotonic()
        out, err = waiter.communicate(timeout=60)
        received = time.monotonic()
        assert (waiter.returncode, out) == (0, "after\n"), err
        with fresh.owner(keys.signal("F1", "also")).client() as node:
            assert node.lrange(keys.signal("F1", "also"), 0, -1) == ["during"]
        print(f"\nfailover: replica promoted {promoted - killed:.2f}s after the kill; the "
              f"blocked wait returned {received - sent:.2f}s after the send "
              f"({received - killed:.2f}s after the kill); a send made during the failover "
              f"returned {sent_during - killed:.2f}s after the kill")
    finally:
        for process in (waiter, during):
            if process and process.poll() is None:
                process.kill()
        fresh.stop()


def cfn_process(project, node, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`cfn *args` running in the background against the cluster at `node`."""
    return subprocess.Popen(
        [sys.executable, "-m", "cfn", *args], cwd=project, text=True,
        env={**os.environ, "REDIS_URL": node.url, "CFN_HOME": str(project / ".cfn"),
             **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def blocked_on(node, waiter: subprocess.Popen, deadline_s: float = 60) -> None:
    """Until a client is blocked on `node` (the waiter, in its blocking read)."""
    deadline = time.monotonic() + deadline_s
    with node.client() as client:
        while not client.info("clients")["blocked_clients"]:
            assert waiter.poll() is None, waiter.communicate()
            assert time.monotonic() < deadline, "the waiter never blocked"
            time.sleep(0.02)
