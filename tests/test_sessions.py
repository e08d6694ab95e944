"""Sessions: a container that lives for a while; tasks run into it in turn."""

import json
import subprocess
import time

import pytest

from containers import build_test_image, podman_available, start_api

pytestmark = pytest.mark.skipif(not podman_available(), reason="needs podman and busybox-static")


@pytest.fixture(scope="module")
def docker_host(tmp_path_factory):
    socket_path = tmp_path_factory.mktemp("podman-sessions") / "podman.sock"
    proc = start_api(socket_path)
    build_test_image()
    yield f"unix://{socket_path}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def session(cfn, docker_host):
    from containers import TEST_IMAGE

    env = {"DOCKER_HOST": docker_host, "CFN_AGENT_IMAGE": TEST_IMAGE}

    def run(*args, **kw):
        return cfn("session", *args, extra_env=env, **kw)

    yield run
    for row in json.loads(run("ls", "--json").stdout or "[]"):
        run("stop", row["id"])


def test_tasks_run_in_turn_in_one_container_with_streamed_output(session, project):
    started = session("start", "--id", "s1", "--timeout", "120", "--memory", "64m")
    assert started.returncode == 0, started.stderr
    first = session("exec", "s1", "--", "/bin/sh", "-c", "echo step-one; echo kept > /tmp/state")
    assert (first.returncode, first.stdout) == (0, "step-one\n")
    second = session("exec", "s1", "--", "/bin/cat", "/tmp/state")  # same container, same state
    assert second.stdout == "kept\n"
    wrote = session("exec", "s1", "--", "/bin/sh", "-c", "echo from-session > out.txt")
    assert wrote.returncode == 0 and (project / "out.txt").read_text() == "from-session\n"
    failed = session("exec", "s1", "--", "/bin/sh", "-c", "exit 7")
    assert failed.returncode == 1 and "exited with 7" in failed.stderr
    listed = json.loads(session("ls", "--json").stdout)
    assert [s["id"] for s in listed] == ["s1"] and listed[0]["workspace"] == str(project)
    assert session("stop", "s1").returncode == 0
    gone = session("exec", "s1", "--", "/bin/true")
    assert gone.returncode == 1 and "no running session" in gone.stderr


def test_a_session_ends_by_itself_at_its_timeout(session):
    assert session("start", "--id", "short", "--timeout", "2").returncode == 0
    deadline = time.monotonic() + 60
    while json.loads(session("ls", "--json").stdout):
        assert time.monotonic() < deadline, "the session outlived its timeout"
        time.sleep(0.5)


def test_a_cloned_repository_as_workspace(session, tmp_path, project):
    origin = tmp_path / "origin"
    origin.mkdir()
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                  "--allow-empty", "-m", "init"]):
        subprocess.run(["git", *args], cwd=origin, check=True)
    (origin / "README").write_text("hello repo\n")
    subprocess.run(["git", "add", "README"], cwd=origin, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m",
                    "readme"], cwd=origin, check=True)
    started = session("start", "--id", "repo1", "--repo", str(origin), "--timeout", "60")
    assert started.returncode == 0, started.stderr
    assert session("exec", "repo1", "--", "/bin/cat", "README").stdout == "hello repo\n"
    bad = session("start", "--id", "repo2", "--repo", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "could not clone" in bad.stderr
