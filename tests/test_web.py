"""The portal's REST API (cfn.web): every route with a valid, an expired, a wrong-role and
an other-task token, against the real test Redis and the project's SQLite."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import jwt
import pytest
from fastapi.testclient import TestClient

from cfn import tokens
from cfn.project import Project
from cfn.web.app import create_app

pytestmark = pytest.mark.usefixtures("reap_supervisors")
T, OTHER = "T1", "T2"


@pytest.fixture
def portal(project, env):
    with Project.open(project, env=env) as opened:
        secret = tokens.signing_secret(None, opened.home)
    client = TestClient(create_app(project, env), raise_server_exceptions=True)

    def token(role: str = "operator", task: str = T, ttl: float = 600) -> dict:
        signed = tokens.issue(secret, agent_id="caller-1", task_id=task, ttl=ttl, role=role)
        return {"Authorization": f"Bearer {signed}"}

    def expired() -> dict:
        """An operator's token, rightly signed, that expired a minute ago."""
        claims = jwt.decode(token()["Authorization"].split()[1], options={
            "verify_signature": False})
        claims["exp"] = int(time.time()) - 60
        return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}

    client.token, client.expired = token, expired
    return client


READS = [("GET", f"/api/agents/{T}", None), ("GET", f"/api/tasks/{T}/status", None),
         ("GET", "/api/metrics/agents", None), ("GET", "/api/metrics/tasks", None)]
WRITES = [("POST", "/api/agents/spawn", {"agentId": "box-1", "taskId": T, "profile": "script",
                                         "command": ["true"]}),
          ("DELETE", f"/api/agents/box-1?taskId={T}", None),
          ("POST", f"/api/tasks/{T}/decision", {"decision": "ITERATE", "iteration": 1,
                                                 "reason": "tests missing"}),
          ("POST", "/api/tasks/create", {"taskId": "T9", "epic": "e", "loop3Agents": ["nope"]})]


@pytest.mark.parametrize("method,path,body", READS + WRITES + [("GET", "/api/health/system",
                                                                  None)])
def test_every_route_refuses_a_missing_a_forged_and_an_expired_token(portal, method, path,
                                                                      body):
    forged = tokens.issue("x" * 64, agent_id="caller-1", task_id=T, role="operator")
    for headers in ({}, {"Authorization": f"Bearer {forged}"}, {"Authorization": "Basic x"},
                    portal.expired()):
        got = portal.request(method, path, json=body, headers=headers)
        assert got.status_code == 401, (headers, got.text)
        assert got.json()["exit_code"] == 1 and got.json()["error"]
    said = portal.request(method, path, json=body, headers=portal.expired()).json()["error"]
    assert "expired" in said


@pytest.mark.parametrize("method,path,body", WRITES)
def test_an_agents_token_may_not_spawn_stop_decide_or_start_loops(portal, r, method, path,
                                                                  body):
    got = portal.request(method, path, json=body, headers=portal.token(role="agent"))
    assert got.status_code == 403 and "operator" in got.json()["error"]
    assert not list(r.scan_iter("*")), "a refused request wrote to Redis"


@pytest.mark.parametrize("method,path,body", READS[:2])
def test_an_agents_token_reads_its_own_task_and_no_other(portal, method, path, body):
    own = portal.request(method, path, headers=portal.token(role="agent"))
    assert own.status_code in (200, 404), own.text  # allowed (the task may not exist yet)
    other = portal.request(method, path, headers=portal.token(role="agent", task=OTHER))
    assert other.status_code == 403 and f"for task {OTHER}" in other.json()["error"]


def test_an_agents_metrics_cover_its_own_task_only(portal):
    spawned = portal.post("/api/agents/spawn", headers=portal.token(),
                          json={"agentId": "box-1", "taskId": T, "profile": "script",
                                "command": ["true"]})
    assert spawned.status_code == 201, spawned.text
    mine = portal.get("/api/metrics/agents", headers=portal.token(role="agent")).json()
    theirs = portal.get("/api/metrics/agents",
                        headers=portal.token(role="agent", task=OTHER)).json()
    assert mine["runs"] == 1 and theirs["runs"] == 0
    assert portal.get("/api/metrics/agents", headers=portal.token()).json()["runs"] == 1


def test_an_operator_spawns_watches_and_stops_an_agent(portal):
    spawned = portal.post("/api/agents/spawn", headers=portal.token(),
                          json={"agentId": "box-1", "taskId": T, "profile": "script",
                                "command": ["sleep", "30"]})
    assert spawned.status_code == 201 and spawned.json()["agent_id"] == "box-1"
    deadline = time.monotonic() + 30
    while True:
        agents = portal.get(f"/api/agents/{T}", headers=portal.token()).json()["agents"]
        if agents and agents[0]["status"] == "running":
            break
        assert time.monotonic() < deadline, agents
        time.sleep(0.1)
    stopped = portal.delete(f"/api/agents/box-1?taskId={T}", headers=portal.token())
    assert stopped.status_code == 202 and stopped.json() == {"stopping": ["box-1"]}


def test_a_decision_is_recorded_and_shows_in_the_status(portal):
    decided = portal.post(f"/api/tasks/{T}/decision", headers=portal.token(),
                          json={"decision": "ITERATE", "iteration": 1, "reason": "gaps"})
    assert decided.status_code == 201 and decided.json()["decision"] == "ITERATE"
    status = portal.get(f"/api/tasks/{T}/status", headers=portal.token(role="agent"))
    assert status.status_code == 200 and status.json()["decision"]["reason"] == "gaps"


@pytest.mark.parametrize("body,said", [
    ({"agentId": "a b", "taskId": T, "profile": "script", "command": ["true"]}, "agent ID"),
    ({"agentId": "box-1", "taskId": T, "profile": "nope"}, "no agent profile"),
    ({"taskId": T}, "agentId"),
])
def test_bad_input_is_a_400_and_writes_nothing(portal, r, body, said):
    got = portal.post("/api/agents/spawn", headers=portal.token(), json=body)
    assert got.status_code == 400 and said in got.json()["error"], got.text
    assert got.json()["exit_code"] == 2
    assert not list(r.scan_iter("*"))


def test_a_loop_with_an_unknown_agent_is_refused_before_it_starts(portal, r):
    got = portal.post("/api/tasks/create", headers=portal.token(),
                      json={"taskId": "T9", "epic": "e", "loop3Agents": ["nope"]})
    assert got.status_code == 400 and "nope" in got.json()["error"]
    assert not list(r.scan_iter("*"))


def test_an_oversized_body_is_refused_unread(portal):
    got = portal.post("/api/agents/spawn", headers=portal.token(),
                      content=b"x" * (2 * 1024 * 1024))
    assert got.status_code == 413 and got.json()["exit_code"] == 2


def test_the_openapi_document_lists_the_seeds_routes(portal):
    paths = portal.get("/openapi.json").json()["paths"]
    for route in ("/api/agents/spawn", "/api/agents/{taskId}", "/api/agents/{agentId}",
                  "/api/tasks/create", "/api/tasks/{taskId}/status",
                  "/api/tasks/{taskId}/decision", "/api/metrics/agents",
                  "/api/metrics/tasks", "/api/health/system"):
        assert route in paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cfn_serve_answers_on_loopback_and_refuses_a_public_bind(cfn, project, env):
    assert cfn("serve", "--host", "0.0.0.0").returncode == 2
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cfn", "serve", "--port", str(port)],
                              cwd=project, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        token = cfn("token", "issue", "--agent-id", "op", "--task-id", T, "--role",
                    "operator").stdout.strip()
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/api/metrics/tasks",
                                                 headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert json.loads(answer.read())["byStatus"] == {}
                    break
            except OSError:
                assert time.monotonic() < deadline, "cfn serve did not answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
