"""Agents in containers, through the docker SDK against podman's Docker-compatible API."""

import json
import time

import pytest

from containers import build_test_image, podman_available

pytestmark = [
    pytest.mark.skipif(not podman_available(), reason="needs podman and busybox-static"),
    pytest.mark.usefixtures("reap_supervisors"),
]


@pytest.fixture(scope="session")
def image(docker_host):
    return build_test_image()


@pytest.fixture
def engine(docker_host):
    import docker

    client = docker.DockerClient(base_url=docker_host)
    yield client
    for container in client.containers.list(all=True, filters={"label": "cfn.task"}):
        container.remove(force=True)
    client.close()


@pytest.fixture
def run_container_agent(cfn, docker_host, image, project):
    def run(agent, task, script, *extra, wait=True):
        env = {"DOCKER_HOST": docker_host}
        got = cfn("spawn-agent", agent, task, "--profile", "script", "--runtime", "container",
                  "--image", image, "--memory", "64m", "--cpus", "0.5", "--json",
                  *(["--wait"] if wait else []), *extra, "--", "/bin/sh", "-c", script,
                  extra_env=env, timeout=120)
        return got

    return run


REPORT = ('REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -s /run/cfn/redis.sock '
          '--user "$REDIS_USERNAME" --no-auth-warning ')


def test_container_agent_works_in_the_mounted_workspace_and_reports(run_container_agent,
                                                                    project, engine, r):
    script = ("echo made-in-container > /workspace/out.txt && "
              + REPORT + "XADD 'coord:{T1}:results' '*' agent box-1 status success "
              "confidence 0.5 result '{\"files\":[\"out.txt\"]}' && "
              "echo '{\"confidence\": 0.66, \"deliverables\": [\"out.txt\"]}'")
    got = run_container_agent("box-1", "T1", script)
    assert got.returncode == 0, got.stdout + got.stderr
    record = json.loads(got.stdout)["records"]["box-1"]
    # its unsigned report reached the stream, but its word is what it printed: an unsigned
    # report could have been written in its name by anyone of its task
    assert (record["status"], record["confidence"]) == ("success", 0.66)
    assert r.xrange("coord:{T1}:results")[0][1]["confidence"] == "0.5"
    assert record["deliverables"] == ["out.txt"]
    assert (project / "out.txt").read_text() == "made-in-container\n"
    assert engine.containers.list(all=True, filters={"label": "cfn.task=T1"}) == []  # removed


def test_limits_labels_no_restart_and_secrets_only_in_env(run_container_agent, engine, cfn,
                                                          docker_host):
    got = run_container_agent("box-2", "T1", "sleep 30", "--timeout", "60", wait=False)
    assert got.returncode == 0, got.stderr
    deadline = time.monotonic() + 30
    while not (found := engine.containers.list(filters={"label": "cfn.agent=box-2"})):
        assert time.monotonic() < deadline, "container never started"
        time.sleep(0.1)
    container = found[0]
    host = container.attrs["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert host["RestartPolicy"]["Name"] in ("no", "")
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["REDIS_USERNAME"].startswith("cfn-T1-box-2") and env["REDIS_PASSWORD"]
    assert env["REDIS_PASSWORD"] not in json.dumps(container.attrs["Config"]["Cmd"])
    assert container.labels["cfn.task"] == "T1"
    container.kill()  # a container that dies is reported failed within seconds
    started = time.monotonic()
    got = cfn("agents", "wait", "box-2", "--task-id", "T1", "--timeout", "60", "--json",
              extra_env={"DOCKER_HOST": docker_host})
    assert got.returncode == 1 and time.monotonic() - started < 30
    assert json.loads(got.stdout)["records"]["box-2"]["status"] == "failure"


def test_container_agent_cannot_touch_another_tasks_keys(run_container_agent, r, project):
    r.set("context:{T2}:secret", "private")
    script = (REPORT + "GET 'context:{T2}:secret' > /workspace/peek.txt 2>&1; "
              + REPORT + "SET 'context:{T1}:mine' ok > /workspace/own.txt 2>&1; "
              "echo '{\"confidence\": 1.0}'")
    got = run_container_agent("box-3", "T1", script)
    assert got.returncode == 0, got.stdout + got.stderr
    assert r.get("context:{T1}:mine") == "ok"
    assert "NOPERM" in (project / "peek.txt").read_text()


def test_a_missing_image_is_refused_before_anything_starts(cfn, docker_host, project, r):
    got = cfn("spawn-agent", "box-4", "T1", "--profile", "script", "--runtime", "container",
              "--image", "localhost/no-such-image:1", "--wait", "--json", "--", "true",
              extra_env={"DOCKER_HOST": docker_host}, timeout=120)
    assert got.returncode == 2  # and no spawn record: only the error, as --json gives it
    assert json.loads(got.stdout) == {"error": got.stderr.removeprefix("cfn: error: ").strip(),
                                      "exit_code": 2}
    assert "localhost/no-such-image:1 not found" in got.stderr
    assert "cfn image build" in got.stderr
    assert not (project / ".cfn" / "agents").exists() and not r.keys("*")  # nothing written


def test_no_container_engine_is_refused_before_anything_starts(cfn, tmp_path, project):
    got = cfn("spawn-agent", "box-5", "T1", "--profile", "script", "--runtime", "container",
              "--", "true", extra_env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    assert got.returncode == 4 and "no container engine answers" in got.stderr
    assert not (project / ".cfn" / "agents").exists()



def test_a_container_agent_of_a_killed_supervisor_is_removed(run_container_agent, engine,
                                                              cfn, docker_host, r):
    import os
    import signal
    import sys

    from test_agents import heartbeat

    got = run_container_agent("box-4", "T1", "sleep 300", wait=False)
    assert got.returncode == 0, got.stderr
    heartbeat(r, "T1", "box-4")  # running, and recorded so (its handle in SQLite)
    os.kill(json.loads(got.stdout)["supervisor_pid"], signal.SIGKILL)
    # the next supervisor (started by the next spawn) records it lost and removes it
    later = cfn("spawn-agent", "later-1", "T1", "--profile", "script", "--json", "--",
                sys.executable, "-c", "pass", extra_env={"DOCKER_HOST": docker_host})
    assert later.returncode == 0, later.stderr
    deadline = time.monotonic() + 20
    while engine.containers.list(all=True, filters={"label": "cfn.agent=box-4"}):
        assert time.monotonic() < deadline, "the orphaned container is still there"
        time.sleep(0.1)
    waited = cfn("agents", "wait", "box-4", "--task-id", "T1", "--timeout", "10", "--json")
    assert json.loads(waited.stdout)["records"]["box-4"]["status"] == "lost"
