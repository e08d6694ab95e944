"""`cfn mcp serve`, driven over stdio by the MCP SDK's own client against the real test
Redis: the tools and their schemas, coordination through them, an agent spawned and its
result collected, and a server run as an agent that stays inside its task."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mcp_client import call, text

pytestmark = pytest.mark.usefixtures("reap_supervisors")


def test_the_tools_are_listed_with_schemas_a_model_can_act_on(project, env):
    async def steps(session):
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in call(project, env, steps)}
    assert {"context_store", "context_get", "signal_send", "signal_wait", "report",
            "collect_results", "barrier_signal", "barrier_wait", "spawn_agent"} <= set(tools)
    schema = tools["collect_results"].input_schema
    assert set(schema["required"]) == {"task_id", "expected"}
    assert schema["properties"]["threshold"]["type"] == "number"
    assert all(tool.description for tool in tools.values())


def test_coordination_through_the_tools_reaches_the_cli_and_errors_keep_their_meaning(
        project, env, cfn):
    async def steps(session):
        stored = await session.call_tool("context_store",
                                         {"task_id": "T1", "key": "plan", "value": "v1"})
        sent = await session.call_tool("signal_send",
                                       {"task_id": "T1", "channel": "go", "payload": "now"})
        missing = await session.call_tool("context_get", {"task_id": "T1", "key": "nope"})
        bad = await session.call_tool("context_get", {"task_id": "a b", "key": "k"})
        return stored, sent, missing, bad

    stored, sent, missing, bad = call(project, env, steps)
    assert not stored.is_error and not sent.is_error
    assert cfn("context", "get", "--task-id", "T1", "--key", "plan").stdout.strip() == "v1"
    waited = cfn("signal", "wait", "--task-id", "T1", "--channel", "go", "--timeout", "5")
    assert waited.returncode == 0 and waited.stdout.strip() == "now"
    assert missing.is_error and "(exit 1)" in text(missing)
    assert bad.is_error and "invalid task ID" in text(bad) and "(exit 2)" in text(bad)


def test_an_operator_spawns_an_agent_and_collects_its_result(project, env):
    script = ('import json; print(json.dumps({"confidence": 0.9, '
              '"deliverables": ["x.py"]}))')

    async def steps(session):
        spawned = await session.call_tool("spawn_agent", {
            "task_id": "T1", "agent_id": "box-1", "profile": "script",
            "command": [sys.executable, "-c", script], "timeout": 60})
        collected = await session.call_tool("collect_results", {
            "task_id": "T1", "expected": 1, "threshold": 1.0, "timeout": 30})
        return spawned, collected

    spawned, collected = call(project, env, steps)
    assert not spawned.is_error, text(spawned)
    record = json.loads(text(spawned))["record"]
    assert record["status"] == "success" and record["confidence"] == 0.9
    result = json.loads(text(collected))
    assert result["met"] and result["count"] == 1


def test_an_operator_runs_watches_and_reads_loops(project, env, agents):
    agents(impl={"*": {"confidence": 0.9, "deliverables": ["app.py"]}},
           rev={"*": {"confidence": 0.95}}, qa={"*": {"confidence": 0.95}},
           po={"*": {"decision": "PROCEED", "reason": "criteria met"}})
    spec = {"epic": "Add a greeting", "mode": "mvp", "loop3_agents": ["impl"],
            "loop2_agents": ["rev", "qa"], "product_owner": "po"}

    async def steps(session):
        started = await session.call_tool("loop_run", {**spec, "task_id": "T1", "wait": False})
        again = await session.call_tool("loop_run", {**spec, "task_id": "T1", "wait": False})
        events, cursor = [], "0"
        for _ in range(30):  # bounded: each watch waits up to 10 s for news
            watched = json.loads(text(await session.call_tool(
                "loop_watch", {"task_id": "T1", "cursor": cursor, "timeout": 10})))
            events += watched["events"]
            cursor = watched["cursor"]
            if watched["ended"]:
                break
        report = json.loads(text(await session.call_tool("loop_report", {"task_id": "T1"})))
        state = await session.read_resource("cfn://tasks/T1/state")
        waited = await session.call_tool("loop_run", {**spec, "task_id": "T2"})
        bad = await session.call_tool("loop_run", {**spec, "task_id": "T3", "mode": "fast"})
        lost = await session.call_tool("loop_watch", {"task_id": "T1", "cursor": "x; FLUSHALL"})
        nobody = await session.call_tool("loop_run", {**spec, "task_id": "T4", "wait": False,
                                                      "loop3_agents": ["nosuch"]})
        return started, again, events, report, state, waited, bad, lost, nobody

    started, again, events, report, state, waited, bad, lost, nobody = call(project, env,
                                                                             steps)
    assert json.loads(text(started)) == {"task_id": "T1", "status": "started"}
    assert again.is_error and "already runs for task T1" in text(again)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "loop_start" and kinds[-1] == "loop_end" and "decision" in kinds
    assert "decision PROCEED: criteria met" in events[kinds.index("decision")]["line"]
    assert len({e["id"] for e in events}) == len(events)  # each event once across watches
    assert report["task"]["status"] == "proceeded"
    assert {a["agent_id"] for a in report["agents"]} == {"l3-impl-1", "l2-rev-1", "l2-qa-2",
                                                         "po-po"}
    assert json.loads(state.contents[0].text)["status"] == "proceeded"
    assert not waited.is_error and json.loads(text(waited))["status"] == "proceeded"
    assert bad.is_error and "(exit 2)" in text(bad) and "mode" in text(bad)
    assert lost.is_error and "is not one loop_watch returned (exit 2)" in text(lost)
    assert nobody.is_error and "no agent profile" in text(nobody) and "(exit 2)" in text(nobody)


def test_a_server_run_as_an_agent_stays_inside_its_task(project, env):
    agent = {**env, "CFN_AGENT_ID": "coder-1", "CFN_TASK_ID": "T1"}

    async def steps(session):
        return [await session.call_tool(name, arguments) for name, arguments in (
            ("context_store", {"task_id": "T2", "key": "k", "value": "v"}),
            ("signal_wait", {"task_id": "T2", "channel": "c", "timeout": 0}),
            ("report", {"task_id": "T1", "agent_id": "someone-else", "confidence": 1.0}),
            ("spawn_agent", {"task_id": "T1", "agent_id": "box-2", "profile": "script",
                             "command": ["true"]}),
        )]

    other_task, other_wait, other_name, spawn = call(project, agent, steps)
    for refused in (other_task, other_wait):
        assert refused.is_error and "may not touch task T2" in text(refused)
    assert other_name.is_error and "reports only as itself (coder-1)" in text(other_name)
    assert spawn.is_error and "agents may not spawn" in text(spawn)


def test_mcp_config_prints_what_claude_code_adds(cfn):
    got = cfn("mcp", "config")
    document = json.loads(got.stdout)
    assert got.returncode == 0 and document["args"][-2:] == ["mcp", "serve"]
    assert document["type"] == "stdio"
    started = subprocess.run([document["command"], *document["args"], "--help"],
                             capture_output=True, text=True)
    assert started.returncode == 0 and "Serve MCP over stdin" in started.stdout


def skilled_project(project, mapping: str = "") -> None:
    (project / "agents").mkdir(exist_ok=True)
    (project / "agents" / "prober.toml").write_text(
        'id = "prober"\nname = "Prober"\nkind = "claude"\nskills = ["browser-automation", '
        '"probing"]\n')
    (project / "cfn.toml").write_text(mapping or (
        '[mcp.skills]\nprobing = ["probe", "playwright"]\n\n'
        '[mcp.servers.probe]\ncommand = "/usr/bin/probe"\nargs = ["--fast"]\n'
        'env = {MODE = "test", PROBE_TOKEN = "${PROBE_TOKEN}"}\n'))


def test_a_spawned_agent_is_given_cfn_and_its_skills_servers_with_tokens_by_reference(
        project, cfn):
    skilled_project(project)
    got = cfn("spawn-agent", "prober-1", "T1", "--prompt", "look", "--dry-run", "--json",
              extra_env={"ANTHROPIC_API_KEY": "sk-ant-0123456789"})
    assert got.returncode == 0, got.stderr
    run = json.loads(got.stdout)[0]
    argv = run["argv"]
    document = json.loads(argv[argv.index("--mcp-config") + 1])
    assert argv[argv.index("--mcp-config") + 2] == "--strict-mcp-config"
    servers = document["mcpServers"]
    assert list(servers) == ["cfn", "playwright", "probe"]  # each server once, in skill order
    assert servers["cfn"]["args"] == ["-m", "cfn", "mcp", "serve"]
    assert servers["playwright"]["headers"] == {
        "Authorization": "Bearer ${CFN_MCP_PLAYWRIGHT_TOKEN}"}  # the seed's default table
    assert servers["probe"] == {"type": "stdio", "command": "/usr/bin/probe", "args": ["--fast"],
                                "env": {"MODE": "test", "PROBE_TOKEN": "${PROBE_TOKEN}",
                                        "CFN_MCP_TOKEN": "${CFN_MCP_PROBE_TOKEN}"}}
    allowed = argv[argv.index("--allowedTools") + 1].split(",")
    assert {"mcp__cfn", "mcp__playwright", "mcp__probe"} <= set(allowed)
    # the tokens are in the agent's environment only, and secret there
    assert run["env"]["CFN_MCP_PROBE_TOKEN"] == run["env"]["CFN_MCP_PLAYWRIGHT_TOKEN"] == \
        "<redacted>"
    shown = cfn("mcp", "config", "--profile", "prober")
    assert json.loads(shown.stdout) == document
    listed = json.loads(cfn("mcp", "skills", "--json").stdout)
    assert set(listed["probing"]) == {"probe", "playwright"}
    assert listed["security-scanning"]["security-scanner"]["url"] == \
        "http://mcp-security:8084/mcp"


def test_the_mcp_servers_an_agent_gets_can_be_turned_off_but_cfns_own(project, cfn):
    skilled_project(project)
    got = cfn("spawn-agent", "prober-1", "T1", "--prompt", "look", "--dry-run", "--json",
              extra_env={"ANTHROPIC_API_KEY": "sk-ant-0123456789", "CFN_AGENT_MCP": "off"})
    argv = json.loads(got.stdout)[0]["argv"]
    assert list(json.loads(argv[argv.index("--mcp-config") + 1])["mcpServers"]) == \
        ["playwright", "probe"]
    plain = cfn("spawn-agent", "coder-1", "T1", "--prompt", "x", "--dry-run", "--json",
                extra_env={"ANTHROPIC_API_KEY": "sk-ant-0123456789", "CFN_AGENT_MCP": "off"})
    assert "--mcp-config" not in json.loads(plain.stdout)[0]["argv"]  # no server: no flag


@pytest.mark.parametrize(("mapping", "said"), [
    ('[mcp.skills]\nprobing = ["nowhere"]\n', "names server(s) nowhere that no"),
    ('[mcp.servers.probe]\nurl = "http://x"\ncommand = "y"\n',
     "server probe (http): unknown field(s) command"),
    ('[mcp.servers.cfn]\ncommand = "y"\n', "server cfn is cfn's own"),
    ('[mcp.servers.probe]\ntype = "stdio"\n', "server probe (stdio) needs a command"),
    ('[mcp]\nservers = 3\n', "mcp.servers must be a table"),
    ('[mcp.skills]\nprobing = "probe"\n', "skill probing must list server names"),
    ('[mcp.servers.probe]\ntype = ["http"]\n', "server probe: type must be one of"),
    ('[mcp.servers.probe]\ncommand = "p"\nargs = "abc"\n', "args must be a list of strings"),
    ('[mcp.servers.a_b]\ncommand = "p"\n\n[mcp.servers.a-b]\ncommand = "q"\n',
     "would share the token variable CFN_MCP_A_B_TOKEN"),
    ('[mcp.servers."a.b"]\ncommand = "p"\n', "server name 'a.b'"),
    ('[mcp.servers.n8n]\nurl = "http://n"\nheaders = {X-Api-Key = "n8n-0123"}\n',
     "server n8n's headers X-Api-Key looks like a secret"),
    ('[mcp.servers.n8n]\nurl = "http://n"\nheaders = {Authorization = "${K}"}\n',
     "headers Authorization: cfn sets it"),
])
def test_a_bad_mcp_table_is_refused_before_anything_starts(project, cfn, mapping, said):
    skilled_project(project, mapping)
    got = cfn("spawn-agent", "prober-1", "T1", "--prompt", "look")
    assert got.returncode == 2 and said in got.stderr, got.stderr
    assert len(got.stderr.strip().splitlines()) == 1
    assert not (project / ".cfn" / "agents").exists()


def test_a_profile_with_a_skill_no_server_serves_is_refused(project, cfn):
    skilled_project(project, '[mcp.skills]\nother = ["playwright"]\n')
    got = cfn("spawn-agent", "prober-1", "T1", "--prompt", "look",
              extra_env={"ANTHROPIC_API_KEY": "sk-ant-0123456789"})
    assert got.returncode == 2
    assert "agent profile prober: skill 'probing' maps to no MCP server" in got.stderr
    assert not (project / ".cfn" / "agents").exists()
