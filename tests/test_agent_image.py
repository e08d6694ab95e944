"""The real agent image (`cfn image build`): a whole CFN Loop of real claude agents in
containers, against a stand-in provider on loopback, the implementer signalling through the
signal.sh skill and storing context through cfn's MCP server from inside its container; and
the seed's spawn_claude_container."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cfn import images
from standin import Standin

IMAGE = "localhost/cfn-agent:latest"
SIGNAL = ("~/.claude/skills/redis-coordination/signal.sh send --task-id T1 --channel ready "
          "--payload from-the-container")

pytestmark = [
    pytest.mark.skipif(shutil.which("podman") is None, reason="needs podman"),
    pytest.mark.skipif(shutil.which("podman") is not None and not images.exists(IMAGE),
                       reason="needs the agent image: cfn image build (CI builds it first)"),
    pytest.mark.usefixtures("reap_supervisors"),
]


@pytest.fixture
def provider(project):
    """Anthropic's API as a stand-in: the implementer signals, then writes its deliverable."""
    model = Standin(
        auth="api-key", tools_when="Success criteria",  # only the implementer's prompt
        tool_calls=[("Bash", {"command": SIGNAL}),
                    ("mcp__cfn__context_store", {"task_id": "T1", "key": "by",
                                                 "value": "mcp-in-the-container"}),
                    ("Write", {"file_path": "/workspace/hello.txt", "content": "hello\n"})],
        reply='Done.\n{"confidence": 0.96, "deliverables": ["hello.txt"], "feedback": "fine",'
              ' "decision": "PROCEED", "reason": "hello.txt is there"}').start()
    yield model
    model.stop()


def test_a_loop_of_claude_agents_in_the_agent_image(cfn, env, docker_host, provider, project):
    project.chmod(0o777)  # the agents run as the image's non-root user
    provider_env = {"DOCKER_HOST": docker_host, "ANTHROPIC_API_KEY": "sk-ant-stand-in",
           "CFN_PROVIDER_ANTHROPIC_BASE_URL": provider.url}
    waiter = subprocess.Popen([sys.executable, "-m", "cfn", "signal", "wait", "--task-id", "T1",
                               "--channel", "ready", "--timeout", "300"], cwd=project,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    got = cfn("loop", "run", "--task-id", "T1", "--epic", "Write hello.txt", "--mode", "mvp",
              "--loop3-agents", "coder", "--loop2-agents", "code-reviewer",
              "--runtime", "container", "--image", IMAGE, "--network", "host", "--json",
              extra_env=provider_env, timeout=600)
    signalled, waited_err = waiter.communicate(timeout=60)
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert report["status"] == "proceeded" and report["iterations"][0]["gate_score"] == 0.96
    assert (project / "hello.txt").read_text() == "hello\n"  # written inside the container
    assert signalled == "from-the-container\n", waited_err  # sent by signal.sh in there
    stored = cfn("context", "get", "--task-id", "T1", "--key", "by")  # and by cfn's MCP server
    assert stored.stdout == "mcp-in-the-container\n", provider.tool_results
    agents = json.loads(cfn("agents", "ls", "--task-id", "T1", "--json").stdout)
    assert {a["runtime"] for a in agents} == {"container"}
    assert all(a["status"] == "success" for a in agents)
    # Anthropic's API took the key as x-api-key, from every agent
    assert {q["x-api-key"] for q in provider.requests} == {"sk-ant-stand-in"}


def test_spawn_claude_container_answers_from_claude_in_a_session(project, env, docker_host,
                                                                 tmp_path):
    """The seed's phase 0: an MCP client asks cfn's server to run Claude Code in a container
    on a cloned repository; the real claude in the agent image answers from the stand-in,
    having read the clone."""
    from mcp_client import call, text

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("fibonacci lives here\n")
    for argv in (["init", "-q"], ["add", "README"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    model = Standin(auth="api-key", reply="fib(n) = fib(n-1) + fib(n-2)",
                    tool_calls=[("Read", {"file_path": "/workspace/README"}),
                                ("Write", {"file_path": "/workspace/fib.py",
                                           "content": "def fib(n): ...\n"})],
                    tools_when="fibonacci").start()
    server_env = {**env, "DOCKER_HOST": docker_host, "ANTHROPIC_API_KEY": "sk-ant-stand-in",
                  "CFN_PROVIDER_ANTHROPIC_BASE_URL": model.url, "CFN_AGENT_IMAGE": IMAGE,
                  "CFN_AGENT_NETWORK": "host"}

    async def steps(session):
        once = await session.call_tool("spawn_claude_container", {
            "task": "Write a Python function to calculate fibonacci", "repoUrl": str(repo),
            "sessionTimeout": 300})
        kept = await session.call_tool("spawn_claude_container", {
            "task": "again", "sessionTimeout": 300, "keepSession": True})
        session_id = json.loads(text(kept))["sessionId"]
        same = await session.call_tool("spawn_claude_container", {
            "task": "and again", "sessionId": session_id})
        gone = await session.call_tool("spawn_claude_container", {
            "task": "once more", "sessionId": session_id})
        return once, kept, same, gone

    try:
        once, kept, same, gone = call(project, server_env, steps)
    finally:
        model.stop()
    assert not once.is_error, text(once)
    answer = json.loads(text(once))
    assert answer["result"] == "fib(n) = fib(n-1) + fib(n-2)" and answer["containerId"]
    assert "fibonacci lives here" in model.tool_results[0]  # it read the clone
    clone = Path(answer["workspace"])  # and wrote there, as the image's user
    assert clone.parent.parent.name == "sessions" and clone.name == "repo"
    assert (clone / "fib.py").read_text() == "def fib(n): ...\n", model.tool_results
    assert "Write a Python function" in json.dumps(model.requests[0]["body"])
    assert {q["x-api-key"] for q in model.requests} == {"sk-ant-stand-in"}
    # a kept session runs the next task in the same container, which then ends
    assert json.loads(text(same))["containerId"] == json.loads(text(kept))["containerId"]
    assert gone.is_error and "no running session" in text(gone)
