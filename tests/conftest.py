"""Fixtures: a real redis-server per test session, isolated state per test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from cfn import embedded

REPO = Path(__file__).resolve().parent.parent
# read once: the autouse fixture below removes CFN_* from each test's environment
STRICT = os.environ.get("CFN_TESTS_STRICT") == "1"
# variables through which a caller's setup could leak into a test
_CALLER_VARS = ("CFN_", "REDIS_", "ANTHROPIC_", "DEFAULT_PROVIDER", "COST_PROVIDER",
                "HIGH_COMPLEXITY_PROVIDER", "ZAI_", "KIMI_", "OPENROUTER_", "GEMINI_", "XAI_")


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch):
    """Every test starts from an environment without the caller's cfn, Redis or provider
    settings, so a developer's REDIS_URL or API key can neither help nor break a test."""
    for name in list(os.environ):
        if name.startswith(_CALLER_VARS):
            monkeypatch.delenv(name)
    # the supervisors that tests start leave soon after their last agent
    monkeypatch.setenv("CFN_SUPERVISOR_IDLE_S", "5")


def redis_tool(name: str) -> str:
    """redis-server / redis-cli beside the newest redis-server cfn would run itself."""
    return str(Path(embedded.server_binary()).with_name(name))


def start_redis(directory: Path, *extra: str) -> tuple[subprocess.Popen, Path]:
    """A redis-server on a unix socket in `directory`, no TCP, no persistence."""
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "redis.sock"
    proc = subprocess.Popen(
        # 777: agents in containers run as their own user; Redis itself asks who they are
        [redis_tool("redis-server"), "--port", "0", "--unixsocket", str(sock),
         "--unixsocketperm", "777",
         "--save", "", "--appendonly", "no", "--dir", str(directory), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not embedded.accepting(sock):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.01)
    return proc, sock


@pytest.fixture(scope="session")
def docker_host(tmp_path_factory):
    """podman's Docker-API socket, for the container runtime's tests."""
    from containers import start_api

    socket_path = tmp_path_factory.mktemp("podman") / "podman.sock"
    proc = start_api(socket_path)
    yield f"unix://{socket_path}"
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory) -> Path:
    proc, sock = start_redis(tmp_path_factory.mktemp("redis"))
    yield sock
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_socket) -> str:
    return f"unix://{redis_socket}"


@pytest.fixture
def r(redis_socket) -> redis.Redis:
    """A client on the shared test server, flushed so each test starts empty."""
    client = redis.Redis(unix_socket_path=str(redis_socket), decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def project(tmp_path) -> Path:
    """An empty project directory (its own state dir, its own cfn.toml if a test writes one)."""
    (tmp_path / ".git").mkdir()
    return tmp_path


@pytest.fixture
def env(project, redis_url, r) -> dict[str, str]:
    """Environment for `cfn` processes: the test server, nothing inherited that matters."""
    return {**os.environ, "REDIS_URL": redis_url, "CFN_HOME": str(project / ".cfn")}


@pytest.fixture
def cfn(project, env):
    """Run the real `cfn` CLI in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, extra_env: dict | None = None, timeout: float = 60, **kw):
        return subprocess.run(
            [sys.executable, "-m", "cfn", *args],
            cwd=kw.pop("cwd", project),
            env={**env, **(extra_env or {})},
            capture_output=True, text=True, timeout=timeout,
            **({"stdin": subprocess.DEVNULL} if "input" not in kw else {}), **kw,
        )

    return run


@pytest.fixture
def reap_supervisors(r):
    """Kill whatever agents and supervisors a test left running."""
    import contextlib
    import json
    import signal

    yield
    for key in r.scan_iter(match="agent:*:heartbeat"):
        beat = json.loads(r.get(key) or "{}")
        for pid, kill in ((beat.get("supervisor_pid"), os.kill),
                          (beat.get("handle"), os.killpg)):
            with contextlib.suppress(TypeError, ValueError, ProcessLookupError, PermissionError):
                kill(int(pid), signal.SIGKILL)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CFN_TESTS_STRICT=1 (CI sets it) a skipped test fails: CI has every real part, so
    a skip there means a test silently did not run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and STRICT:
        report.outcome = "failed"
        report.longrepr = f"skipped under CFN_TESTS_STRICT: {report.longrepr}"


@pytest.fixture
def agents(project):
    """Write scripted profiles: agents(name=plan, ...), each run by tests/fake_agent.py."""
    (project / "agents").mkdir(exist_ok=True)
    # in the workspace: a sandboxed agent sees that, and not the tests' own directory
    fake = shutil.copy(REPO / "tests" / "fake_agent.py", project / "fake_agent.py")

    def write(**plans):
        for name, plan in plans.items():
            literal = json.dumps(plan).replace("{", "{{").replace("}", "}}")  # not placeholders
            command = json.dumps([sys.executable, str(fake), literal])
            (project / "agents" / f"{name}.toml").write_text(
                f'id = "{name}"\nname = "{name}"\nkind = "scripted"\ntimeout = 60\n'
                f"command = {command}\n")

    return write
