"""The container pool: docker/docker-compose.workers.yml brought up by podman-compose, with
daemons in containers of the real agent image sharing a queue in the pool's own Redis."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cfn import images
from conftest import REPO

IMAGE = "localhost/cfn-agent:latest"
COMPOSE = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))

pytestmark = [
    pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman"),
    pytest.mark.skipif(shutil.which("podman") is not None and not images.exists(IMAGE),
                       reason="needs the agent image: cfn image build (CI builds it first)"),
]


@pytest.fixture
def pool(tmp_path):
    workspace = tmp_path / "workspace"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("import os\n\n\ndef main():\n    return 1\n")
    for path in (tmp_path, workspace, workspace / "src"):
        path.chmod(0o755)  # the containers' user is the image's, not ours
    project = f"cfn-pool-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CFN_WORKSPACE": str(workspace), "CFN_POOL_SIZE": "2",
           "CFN_POOL_WORKERS": "map"}

    def compose(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([COMPOSE, "-p", project, "-f",
                               str(REPO / "docker" / "docker-compose.workers.yml"), *args],
                              env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    up = compose("up", "-d")
    assert up.returncode == 0, up.stderr[-2000:]
    yield compose
    compose("down", "-t", "2")


def test_the_compose_pool_comes_up_and_runs_a_triggered_worker(pool):
    def status() -> dict:
        got = pool("exec", "-T", "queue-manager", "cfn", "daemon", "status", "--json")
        return json.loads(got.stdout) if got.stdout.strip().startswith("{") else {}

    deadline = time.monotonic() + 120
    while len(status().get("daemons", [])) < 3:  # two in the pool, the queue manager
        assert time.monotonic() < deadline, pool("logs").stdout[-3000:]
        time.sleep(1)
    daemons = status()["daemons"]
    consuming = {d["id"] for d in daemons if d["options"]["consume"]}
    assert len(consuming) == 2 and all(not d["options"]["schedule"] for d in daemons
                                       if d["id"] in consuming)
    got = pool("exec", "-T", "queue-manager", "cfn", "daemon", "trigger", "-w", "testgaps",
               "--wait", "--json", "--timeout", "120")
    assert got.returncode == 0, got.stdout + got.stderr
    result = json.loads(got.stdout)["result"]
    assert result["status"] == "success" and result["mode"] == "local"
    assert result["daemon"] in consuming  # a pool container ran it, not the manager
    assert result["result"]["untested_total"] == 1  # it looked at the mounted project
