"""The real `claude` CLI as an agent, against stand-in providers on loopback."""

import json
import shutil
import sys
import threading
import time

import pytest

from cfn import keys
from standin import Standin

pytestmark = [
    pytest.mark.skipif(shutil.which("claude") is None,
                       reason="needs the claude CLI: npm install -g @anthropic-ai/claude-code"),
    pytest.mark.usefixtures("reap_supervisors"),
]


@pytest.fixture
def providers():
    limited = Standin(status=429, auth="api-key").start()  # as Anthropic's API
    working = Standin(reply='All done.\n{"confidence": 0.9, "deliverables": ["hello.txt"], '
                            '"feedback": "fine"}').start()
    yield limited, working
    limited.stop()
    working.stop()


@pytest.fixture
def claude_env(tmp_path, providers):
    limited, working = providers
    home = tmp_path / "claude-home"
    home.mkdir()
    return {
        "HOME": str(home),  # Claude Code's own config stays in the test
        "ANTHROPIC_API_KEY": "sk-ant-for-anthropic-only",
        "ZAI_API_KEY": "sk-zai-for-zai-only",
        "CFN_PROVIDER_ANTHROPIC_BASE_URL": limited.url,
        "CFN_PROVIDER_ZAI_BASE_URL": working.url,
        "CFN_FALLBACK_PROVIDERS": "zai",
        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


@pytest.fixture
def quick_coder(project):
    """The shipped coder, but giving up on a provider after its first refusal."""
    (project / "agents").mkdir()
    (project / "agents" / "coder.toml").write_text(
        'id = "coder"\nname = "Coder"\nrole = "implementer"\nkind = "claude"\n'
        'timeout = 120\nmax_retries = 0\ninstructions = "You write code."\n')


def test_rate_limited_provider_moves_the_agent_to_the_next(cfn, r, providers, claude_env,
                                                           quick_coder):
    limited, working = providers
    got = cfn("spawn-agent", "coder-1", "T1", "--prompt", "Write hello.txt", "--wait",
              "--json", extra_env=claude_env, timeout=180)
    assert got.returncode == 0, got.stdout + got.stderr
    record = json.loads(got.stdout)["records"]["coder-1"]
    assert (record["status"], record["provider"], record["confidence"]) == ("success", "zai", 0.9)
    assert record["deliverables"] == ["hello.txt"] and record["feedback"] == "fine"
    assert record["input_tokens"] == 12 and record["output_tokens"] == 7

    # the routed base URL, token and model reached each stand-in, and each key only its own
    assert limited.requests and working.requests
    assert {(q["x-api-key"], q["authorization"]) for q in limited.requests} == \
        {("sk-ant-for-anthropic-only", None)}  # Anthropic's API takes keys as x-api-key
    assert {(q["x-api-key"], q["authorization"]) for q in working.requests} == \
        {(None, "Bearer sk-zai-for-zai-only")}  # third parties as a bearer token
    assert {q["model"] for q in limited.requests} == {"claude-sonnet-4-5"}
    assert {q["model"] for q in working.requests} == {"glm-4.6"}
    assert "Write hello.txt" in json.dumps(working.requests[-1]["body"])
    assert r.exists(keys.provider_cooldown("anthropic"))

    history = json.loads(cfn("history", "T1", "--json").stdout)
    assert [(a["provider"], a["status"]) for a in history["agents"]] == [
        ("anthropic", "provider-error"), ("zai", "success")]
    assert history["costs"][0]["provider"] == "zai" and history["costs"][0]["cost_usd"] > 0


def test_a_provider_in_cooldown_is_tried_last(cfn, r, providers, claude_env, quick_coder):
    limited, working = providers
    r.set(keys.provider_cooldown("anthropic"), str(time.time()), ex=60)
    got = cfn("spawn-agent", "coder-1", "T1", "--prompt", "hi", "--wait", "--json",
              extra_env=claude_env, timeout=180)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["records"]["coder-1"]["provider"] == "zai"
    assert limited.requests == []


def test_claude_without_a_working_provider_fails_and_is_never_success(cfn, providers,
                                                                       claude_env, quick_coder):
    env = {**claude_env, "CFN_FALLBACK_PROVIDERS": ""}
    got = cfn("spawn-agent", "coder-1", "T1", "--prompt", "hi", "--wait", "--json",
              extra_env=env, timeout=180)
    assert got.returncode == 1
    record = json.loads(got.stdout)["records"]["coder-1"]
    assert record["status"] == "failure" and "429" in record["error"]
    assert record["confidence"] is None


def test_a_loop_of_real_claude_agents_reaches_a_decision(cfn, claude_env, providers, project):
    """Implementer, validators and product owner are all the real claude CLI."""
    _, working = providers
    working.reply = ('Done.\n{"confidence": 0.96, "deliverables": ["hello.txt"], '
                     '"feedback": "fine", "decision": "PROCEED", "reason": "meets the epic"}')
    working.auth = "api-key"  # it stands in for Anthropic's API here
    # the implementer writes its deliverable (the loop checks it exists); reviewers only read
    working.tool_calls = [("Write", {"file_path": str(project / "hello.txt"),
                                     "content": "hello\n"})]
    env = {**claude_env, "CFN_PROVIDER_ANTHROPIC_BASE_URL": working.url}
    got = cfn("loop", "run", "--task-id", "T1", "--epic", "Write hello.txt", "--mode", "mvp",
              "--loop3-agents", "coder", "--loop2-agents", "code-reviewer,tester",
              "--json", extra_env=env, timeout=300)
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert report["status"] == "proceeded" and report["iterations"][0]["gate_score"] == 0.96
    assert report["cost_usd"] > 0
    prompts = [json.dumps(q["body"]) for q in working.requests]
    assert any("Write hello.txt" in p and "Deliverables to validate: hello.txt" in p
               for p in prompts)  # validators were told what the implementer delivered


def test_a_refused_key_is_reported_as_a_key_problem_naming_the_provider(cfn, claude_env,
                                                                        quick_coder):
    wants_api_key = Standin(auth="api-key").start()  # zai's key arrives as a bearer token
    try:
        got = cfn("spawn-agent", "coder-1", "T9", "cli", "zai", "--prompt", "hi",
                  "--wait", "--json", timeout=180,
                  extra_env={**claude_env, "CFN_PROVIDER_ZAI_BASE_URL": wants_api_key.url})
    finally:
        wants_api_key.stop()
    assert got.returncode == 1, got.stderr
    record = json.loads(got.stdout)["records"]["coder-1"]
    assert record["status"] == "failure" and record["key_refused"] is True
    assert "provider zai refused its key" in record["error"] and "ZAI_API_KEY" in record["error"]
    assert "sk-zai-for-zai-only" not in got.stdout + got.stderr


SIGNAL = ("~/.claude/skills/redis-coordination/signal.sh send --task-id T7 --channel ready "
          "--payload from-claude")


def test_a_claude_agent_signals_through_the_skill_script(cfn, claude_env, quick_coder):
    """The stand-in model asks the real claude CLI to run signal.sh; the coordination skills
    are allowed to it, so the signal reaches a waiter on the host."""
    model = Standin(tool_calls=[("Bash", {"command": SIGNAL})],
                    reply='Sent.\n{"confidence": 0.8}').start()
    try:
        got = cfn("spawn-agent", "coder-1", "T7", "cli", "zai", "--prompt", "signal ready",
                  "--json", timeout=60,
                  extra_env={**claude_env, "CFN_PROVIDER_ZAI_BASE_URL": model.url})
        assert got.returncode == 0, got.stderr
        waited = cfn("signal", "wait", "--task-id", "T7", "--channel", "ready", "--timeout", "60")
        assert (waited.returncode, waited.stdout) == (0, "from-claude\n"), waited.stderr
        done = cfn("agents", "wait", "--task-id", "T7", "--json", timeout=120)
        record = json.loads(done.stdout)["records"]["coder-1"]
        assert (record["status"], record["confidence"]) == ("success", 0.8), model.tool_results
    finally:
        model.stop()


def test_an_agent_whose_tools_were_denied_is_not_a_success(cfn, claude_env, quick_coder):
    """Anything beyond its profile's tools and the coordination skills is refused, and an
    agent that was refused did not do its work, whatever confidence it claims."""
    model = Standin(tool_calls=[("Bash", {"command": "cat /etc/hostname > stolen.txt"})],
                    reply='Done.\n{"confidence": 0.95, "deliverables": ["stolen.txt"]}').start()
    try:
        got = cfn("spawn-agent", "coder-1", "T8", "cli", "zai", "--prompt", "do it", "--wait",
                  "--json", timeout=120,
                  extra_env={**claude_env, "CFN_PROVIDER_ZAI_BASE_URL": model.url})
    finally:
        model.stop()
    assert got.returncode == 1, got.stderr
    record = json.loads(got.stdout)["records"]["coder-1"]
    assert record["status"] == "failure" and "tools were denied" in record["error"]
    assert "cat /etc/hostname" in record["error"]


def log_events(cfn, task: str) -> list[dict]:
    """What `cfn agents logs` shows of the agent's log, as the JSON events in it."""
    got = cfn("agents", "logs", "coder-1", "--task-id", task)
    assert got.returncode == 0, got.stderr
    return [json.loads(line) for line in got.stdout.splitlines() if line.startswith("{")]


def test_the_log_shows_each_event_while_the_agent_works(cfn, claude_env, quick_coder, project):
    """Claude agents stream: the log has the agent's events before it ends (the stand-in
    holds its last reply until they have been seen), and the report is the stream's
    result event."""
    (project / "notes.txt").write_text("remember the milk\n")
    model = Standin(tool_calls=[("Read", {"file_path": str(project / "notes.txt")})],
                    reply='Read it.\n{"confidence": 0.7, "deliverables": ["notes.txt"]}',
                    release=threading.Event()).start()
    try:
        got = cfn("spawn-agent", "coder-1", "T5", "cli", "zai", "--prompt", "read notes.txt",
                  "--json", timeout=60,
                  extra_env={**claude_env, "CFN_PROVIDER_ZAI_BASE_URL": model.url})
        assert got.returncode == 0, got.stderr
        assert model.holding.wait(timeout=90), "the agent never asked for its last reply"
        during = log_events(cfn, "T5")
        running = json.loads(cfn("agents", "ls", "--task-id", "T5", "--json").stdout)
        assert running[0]["status"] == "running"
    finally:
        model.release.set()
        done = cfn("agents", "wait", "--task-id", "T5", "--json", timeout=120)
        model.stop()
    # before the end: its start, the tool it asked for and what the tool returned
    assert [e["type"] for e in during][:1] == ["system"]
    assert "result" not in [e["type"] for e in during]
    assert "remember the milk" in json.dumps([e for e in during if e["type"] == "user"])
    assert any(block.get("type") == "tool_use" and block.get("name") == "Read"
               for e in during if e["type"] == "assistant"
               for block in e["message"]["content"])
    # the end: one result event, and the record is read from it
    after = log_events(cfn, "T5")
    assert after[:len(during)] == during and after[-1]["type"] == "result"
    result = after[-1]
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)["records"]["coder-1"]
    assert (record["status"], record["confidence"], record["deliverables"]) == \
        ("success", 0.7, ["notes.txt"])
    assert record["input_tokens"] == result["usage"]["input_tokens"] > 0
    assert record["output_tokens"] == result["usage"]["output_tokens"] > 0
    assert record["cost_usd"] == result["total_cost_usd"] > 0


PROBE_SERVER = '''
import os
from mcp.server.mcpserver import MCPServer

server = MCPServer("probe")


@server.tool()
def token() -> str:
    """The token this server was given for the agent."""
    return os.environ.get("CFN_MCP_TOKEN", "none")


server.run("stdio")
'''


def test_a_claude_agent_coordinates_through_mcp_servers_given_by_its_skills(
        cfn, claude_env, project):
    """The real claude CLI is given cfn's own MCP server and, for its profile's skill, a
    project's server (--mcp-config); the stand-in model calls their tools. cfn's signal
    reaches a waiter on the host, cfn's server refuses another task, and the skill's server
    got a token signed for it, for this agent and task."""
    (project / "probe.py").write_text(PROBE_SERVER)
    (project / "cfn.toml").write_text(
        '[mcp.skills]\nprobing = ["probe"]\n\n'
        f'[mcp.servers.probe]\ncommand = "{sys.executable}"\nargs = ["{project}/probe.py"]\n')
    (project / "agents").mkdir()
    (project / "agents" / "prober.toml").write_text(
        'id = "prober"\nname = "Prober"\nkind = "claude"\ntimeout = 120\nmax_retries = 0\n'
        'skills = ["probing"]\n')
    model = Standin(tool_calls=[
        ("mcp__cfn__signal_send", {"task_id": "T7", "channel": "ready", "payload": "by-mcp"}),
        ("mcp__cfn__context_store", {"task_id": "T8", "key": "k", "value": "v"}),
        ("mcp__probe__token", {}),
    ], reply='Sent.\n{"confidence": 0.8}').start()
    try:
        got = cfn("spawn-agent", "prober-1", "T7", "cli", "zai", "--prompt", "signal ready",
                  "--json", timeout=60,
                  extra_env={**claude_env, "CFN_PROVIDER_ZAI_BASE_URL": model.url})
        assert got.returncode == 0, got.stderr
        waited = cfn("signal", "wait", "--task-id", "T7", "--channel", "ready", "--timeout",
                     "90", timeout=120)
        assert (waited.returncode, waited.stdout) == (0, "by-mcp\n"), \
            cfn("agents", "logs", "prober-1", "--task-id", "T7").stdout
        done = cfn("agents", "wait", "--task-id", "T7", "--json", timeout=120)
        record = json.loads(done.stdout)["records"]["prober-1"]
        assert record["status"] == "success", (record, model.tool_results)
    finally:
        model.stop()
    sent, refused, given = model.tool_results
    assert "may not touch task T8" in refused
    token = json.loads(given)["result"]
    claims = cfn("token", "verify", "--mcp-server", "probe", "--json", input=token)
    assert claims.returncode == 0, claims.stderr + token
    assert (json.loads(claims.stdout)["sub"], json.loads(claims.stdout)["task_id"]) == \
        ("prober-1", "T7")
    assert cfn("token", "verify", input=token).returncode == 1  # not a token for cfn itself
