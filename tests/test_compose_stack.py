"""docker/docker-compose.yml, the seeds' stack (redis with AOF, the portal as the
orchestrator, the daemon by profile), as the base file of `cfn worktree up`: podman-compose
brings it up from the real agent image, and the portal answers on the worktree's leased
port."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cfn import images, tokens
from conftest import REPO

IMAGE = "localhost/cfn-agent:latest"
pytestmark = [
    pytest.mark.skipif(shutil.which("podman-compose") is None, reason="needs podman-compose"),
    pytest.mark.skipif(shutil.which("podman") is not None and not images.exists(IMAGE),
                       reason="needs the agent image: cfn image build (CI builds it first)"),
]


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    ident = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
             "GIT_COMMITTER_EMAIL": "t@t"}
    shutil.copy(REPO / "docker" / "docker-compose.yml", path / "compose.yaml")
    for args in (("init", "-q", "-b", "main"), ("add", "."), ("commit", "-q", "-m", "stack")):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True,
                       env={**os.environ, **ident})
    return path


def get(port: int, path: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_stack_comes_up_under_a_worktree_and_the_portal_answers(cfn, tmp_path):
    repo = make_repo(tmp_path / "stack")
    secret = secrets.token_hex(32)
    env = {"CFN_TOKEN_SECRET": secret, "CFN_AGENT_IMAGE": IMAGE}
    made = cfn("worktree", "up", "feature/portal", "--json", cwd=repo, extra_env=env,
               timeout=300)
    assert made.returncode == 0, made.stderr
    worktree = json.loads(made.stdout)
    try:
        port = worktree["ports"]["orchestrator"]
        assert "redis" not in worktree["ports"]  # only the stack reaches its Redis
        operator = tokens.issue(secret, agent_id="me", task_id="T1", role="operator")
        deadline = time.monotonic() + 120
        while True:
            try:
                status, body = get(port, "/api/metrics/tasks", operator)
                break
            except OSError:
                assert time.monotonic() < deadline, "the portal did not answer"
                time.sleep(1)
        assert status == 200 and body["byStatus"] == {}
        forged = tokens.issue("x" * 64, agent_id="me", task_id="T1", role="operator")
        assert get(port, "/api/metrics/tasks", forged)[0] == 401
        status, health = get(port, "/api/health/system", operator)
        redis_check = next(c for c in health["checks"] if c["name"].startswith("redis"))
        assert redis_check["status"] == "ok", health  # the portal reached the stack's Redis
    finally:
        down = cfn("worktree", "down", "feature/portal", "--volumes", cwd=repo,
                   extra_env=env, timeout=300)
    assert down.returncode == 0, down.stderr
