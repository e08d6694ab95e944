"""`cfn doctor` (and `cfn health`) against the real test Redis, a real database, the real
claude CLI and whatever container engine and compose tool the machine has."""

import json
import os
import pty
import select
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from containers import podman_available

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-doctor-secret-1", "KIMI_API_KEY": "sk-kimi-doctor-2",
        "ZAI_API_KEY": "sk-zai-doctor-3"}
REQUIRED = ("python", "redis", "database")


def checks(got) -> dict[str, dict]:
    return {check["name"]: check for check in json.loads(got.stdout)["checks"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_healthy_setup_exits_0_and_lists_each_check(cfn, project):
    got = cfn("doctor")
    assert got.returncode == 0, got.stderr
    rows = [line.split("\t") for line in got.stdout.splitlines()]
    assert all(len(row) == 4 for row in rows)  # piped: tab-separated, no headers
    names = [row[0] for row in rows]
    assert names[:3] == ["python", "redis", "redis persistence"]
    for name in ("database", "container engine", "claude", "provider anthropic", "compose"):
        assert name in names
    status = {row[0]: row[1] for row in rows}
    assert all(status[name] == "ok" for name in REQUIRED)
    assert set(status.values()) <= {"ok", "warning", "error"}
    assert status["redis persistence"] == "warning"  # the test server saves nothing
    assert (project / ".cfn" / "cfn.db").exists()


def test_json_has_one_document_with_every_check(cfn):
    got = cfn("health", "--json")  # the seed's name
    assert got.returncode == 0, got.stderr
    document = json.loads(got.stdout)
    assert document["ok"] is True
    for check in document["checks"]:
        assert set(check) == {"name", "status", "detail", "fix", "required"}
        assert check["status"] in ("ok", "warning", "error")
        assert check["status"] == "ok" or check["fix"], check  # nothing wrong without a fix
    found = checks(got)
    assert [name for name in REQUIRED if found[name]["required"]] == list(REQUIRED)
    assert found["redis"]["detail"].startswith("Redis ")
    assert "migrations current" in found["database"]["detail"]
    assert found["redis acl"]["status"] == "ok"  # the test server is Redis 7


def test_an_unreachable_redis_is_a_failed_check_with_its_fix(cfn):
    url = f"redis://:hunter2-doctor@127.0.0.1:{free_port()}/0"
    got = cfn("doctor", "--json", extra_env={"REDIS_URL": url, "CFN_RETRIES": "0"})
    assert got.returncode == 1, got.stderr  # not 4: the doctor itself ran
    redis_check = checks(got)["redis"]
    assert redis_check["status"] == "error" and redis_check["required"]
    assert "REDIS_URL" in redis_check["fix"]
    assert "hunter2-doctor" not in got.stdout + got.stderr
    assert ":****@127.0.0.1" in redis_check["detail"]  # which Redis, password masked
    assert checks(got)["database"]["status"] == "ok"  # the other checks still ran
    assert "Traceback" not in got.stderr
    table = cfn("doctor", extra_env={"REDIS_URL": url, "CFN_RETRIES": "0"})
    assert table.returncode == 1
    assert any(line.startswith("redis\terror\t") for line in table.stdout.splitlines())


def test_a_database_this_cfn_cannot_use_fails_the_doctor(cfn, project):
    assert cfn("db", "status").returncode == 0
    with sqlite3.connect(project / ".cfn" / "cfn.db") as db:
        db.execute("INSERT INTO cfn_migrations (version, name, checksum) "
                   "VALUES (999, 'from_the_future', 'x')")
    got = cfn("doctor", "--json")
    assert got.returncode == 1
    database = checks(got)["database"]
    assert database["status"] == "error" and "upgrade cfn" in database["detail"]


def test_keys_are_never_shown_only_whether_they_are_set(cfn):
    for args in (("doctor",), ("doctor", "--json")):
        got = cfn(*args, extra_env={**KEYS, "CFN_CUSTOM_ROUTING": "1"})
        assert got.returncode == 0, got.stderr
        for key in KEYS.values():
            assert key not in got.stdout + got.stderr
    found = checks(got)
    assert found["provider anthropic"] == {
        "name": "provider anthropic", "status": "ok", "detail": "key in ANTHROPIC_API_KEY",
        "fix": "", "required": False}
    # custom routing picks openrouter for nothing; xai's key is missing but unused
    assert found["provider xai"]["status"] == "ok"


def test_a_missing_key_of_a_provider_routing_picks_is_a_warning(cfn):
    got = cfn("doctor", "--json", extra_env={"CFN_CUSTOM_ROUTING": "1",
                                             "DEFAULT_PROVIDER": "zai"})
    assert got.returncode == 0, got.stderr  # optional: a warning, not a failure
    zai = checks(got)["provider zai"]
    assert zai["status"] == "warning" and zai["fix"] == "export ZAI_API_KEY"


def test_missing_optional_tools_are_warnings(cfn, tmp_path):
    # a PATH with only this Python: no claude, no compose tool, no engine CLI
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    got = cfn("doctor", "--json", extra_env={"PATH": str(bin_dir),
                                             "DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert got.returncode == 0, got.stderr
    found = checks(got)
    for name in ("claude", "compose", "container engine"):
        assert found[name]["status"] == "warning" and found[name]["fix"], found[name]
    assert "npm install" in found["claude"]["fix"]


def test_on_a_terminal_it_prints_a_table_with_headers(env, project):
    """The same rows, in aligned columns under headers, when stdout is a terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "cfn", "doctor"], cwd=project, env=env,
                            stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    output, deadline = b"", time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the terminal closed: the doctor is done
            break
        if ready and not chunk:
            break
        output += chunk
    os.close(leader)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    proc.stderr.close()
    lines = output.decode().splitlines()
    assert lines[0].split() == ["check", "status", "detail", "fix"]
    assert "\t" not in output.decode()
    status_column = lines[0].index("status")
    assert all(line[status_column:].split()[0] in ("ok", "warning", "error")
               for line in lines[1:])


@pytest.mark.parametrize("command", ["doctor", "health"])
def test_help_says_what_it_checks(cfn, command):
    got = cfn(command, "--help")
    assert got.returncode == 0 and "provider keys" in got.stdout


@pytest.mark.skipif(not podman_available(), reason="needs podman")
def test_a_running_engine_and_the_agent_image_are_checked(cfn, docker_host):
    got = cfn("doctor", "--json", extra_env={"DOCKER_HOST": docker_host,
                                             "CFN_AGENT_IMAGE": "localhost/cfn-no-such:x"})
    assert got.returncode == 0, got.stderr
    found = checks(got)
    assert found["container engine"]["status"] == "ok"
    assert docker_host in found["container engine"]["detail"]
    assert found["agent image"] == {
        "name": "agent image", "status": "warning",
        "detail": "localhost/cfn-no-such:x is not in the engine", "fix": "cfn image build",
        "required": False}
