"""Live events: npm's socket.io-client, running the seed's snippet, follows a real
`cfn demo` loop through `cfn serve`, and catches up after a reconnect."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="needs node and npm (socket.io-client)")


@pytest.fixture(scope="session")
def socketio_client(tmp_path_factory) -> Path:
    """npm's socket.io-client, installed once for the session."""
    where = tmp_path_factory.mktemp("node")
    done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                           "socket.io-client@4"], cwd=where, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    script = where / "client.js"
    shutil.copy(REPO / "tests" / "socketio_client.js", script)
    return script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, env):
    """`cfn serve` on a project the demo will run in; yields (url, env, directory)."""
    directory = tmp_path / "demo"
    directory.mkdir()
    demo_env = {**env, "CFN_HOME": str(directory / ".cfn")}
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "cfn", "serve", "--port", str(port)],
                               cwd=directory, env=demo_env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert time.monotonic() < deadline, "cfn serve did not listen"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}", demo_env, directory
    process.terminate()
    process.wait(timeout=30)


def _token(env: dict, directory: Path, task: str, role: str) -> str:
    return subprocess.run([sys.executable, "-m", "cfn", "token", "issue", "--agent-id", "me",
                           "--task-id", task, "--role", role], cwd=directory, env=env,
                          capture_output=True, text=True, check=True).stdout.strip()


def test_the_seeds_client_follows_a_demo_loop_and_catches_up_after_a_reconnect(
        server, socketio_client, redis_url):
    url, env, directory = server
    token = _token(env, directory, "greet", "agent")  # an agent of the task may watch it
    client = subprocess.Popen(["node", str(socketio_client), url, "greet", token, "3"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "NODE_PATH": str(socketio_client.parent /
                                                                  "node_modules")})
    time.sleep(1)  # the client has connected before the loop starts
    demo = subprocess.run([sys.executable, "-m", "cfn", "demo", "--dir", str(directory),
                           "--json"], env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert demo.returncode == 0, demo.stderr
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, out + err
    lines = [json.loads(line) for line in out.splitlines()]
    said = [line["event"] for line in lines]
    assert said.count("reconnect") == 1  # dropped after 3 events, back 0.3 s later
    events = [line for line in lines if line["event"] in ("agent:update", "loop:progress")]
    ids = [e["data"]["eventId"] for e in events]
    stream = redis.Redis.from_url(redis_url, decode_responses=True).xrange(
        "coord:{greet}:events")
    assert ids == [entry_id for entry_id, _ in stream]  # every event once, in order
    updates = [e["data"] for e in events if e["event"] == "agent:update"]
    assert {"running", "success"} <= {u["status"] for u in updates}
    assert all(u["agentId"] for u in updates)
    progress = [e["data"] for e in events if e["event"] == "loop:progress"]
    assert progress[-1]["type"] == "loop_end" and progress[-1]["progress"] == 1.0
    assert {"loop3", "loop2", "product-owner"} <= {p["loop"] for p in progress}


def test_a_socket_without_a_valid_token_or_for_another_task_is_refused(server,
                                                                        socketio_client):
    url, env, directory = server
    other = _token(env, directory, "other-task", "agent")
    for token in ("forged", other):
        got = subprocess.run(["node", str(socketio_client), url, "greet", token, "99"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "NODE_PATH": str(socketio_client.parent /
                                                                 "node_modules")})
        assert got.returncode == 3, got.stdout + got.stderr
        refused = json.loads(got.stdout.splitlines()[-1])
        assert refused["event"] == "connect_error" and refused["data"]["message"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt-get)")
def test_the_dashboard_updates_live_in_headless_chromium_while_a_loop_runs(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, env, directory = server
    token = _token(env, directory, "greet", "operator")
    shot = Path(os.environ.get("DASHBOARD_SCREENSHOT") or tmp_path / "dashboard.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(f"{url}/dashboard?token={token}")  # signs in: the token becomes a cookie
            assert page.url == f"{url}/dashboard" and "No task yet" in page.content()
            page.goto(f"{url}/dashboard/tasks/greet")
            page.wait_for_selector("#live.success", timeout=30000)  # its event stream is open
            page.evaluate("window.loadedOnce = true")
            demo = subprocess.run([sys.executable, "-m", "cfn", "demo", "--dir",
                                   str(directory), "--json"], env=env, capture_output=True,
                                  text=True, timeout=300, stdin=subprocess.DEVNULL)
            assert demo.returncode == 0, demo.stderr
            page.wait_for_selector("text=Iteration 2", timeout=30000)
            page.wait_for_selector(".pill.proceed", timeout=30000)
            assert page.evaluate("window.loadedOnce") is True  # updated, never reloaded
            body = page.inner_text("#body")
            assert "Iteration 1" in body and "ITERATE" in body and "PROCEED" in body
            assert "Gate and consensus" in body and page.locator("svg.chart rect").count() >= 2
            page.screenshot(path=str(shot), full_page=True)
            page.goto(f"{url}/dashboard")
            assert "greet" in page.inner_text("main")
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
