"""Table-driven tests of the pure rules: each row is an input and what a user must see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfn.agents import outcome, profiles
from cfn.config import resolve
from cfn.errors import InvalidInput
from cfn.loop import scoring
from cfn.worktrees.compose import Port, parse_port

OK, FAIL = "success", "failure"


def recs(*rows: tuple[str, float | None]) -> dict[str, dict]:
    return {f"a{i}": {"status": status, "confidence": confidence}
            for i, (status, confidence) in enumerate(rows)}


@pytest.mark.parametrize("records,threshold,tests,score,passed", [
    (recs((OK, 0.9), (OK, 0.8)), 0.8, (None, False), 0.85, True),
    (recs((OK, 0.9), (OK, 0.6)), 0.8, (None, False), 0.75, False),
    (recs((OK, None), (OK, None)), 0.7, (None, False), None, False),   # nobody gave one
    (recs((OK, 0.99), (FAIL, None)), 0.7, (None, False), 0.99, False),  # quorum 2 of 2 missed
    (recs((OK, 0.99), (OK, None), (FAIL, 0.1)), 0.6, (None, False), 0.99, True),
    (recs((OK, 0.2)), 0.9, (1.0, True), 1.0, True),                    # the test rate rules
    (recs((OK, 0.99)), 0.9, (0.5, True), 0.5, False),
    (recs((OK, 0.99)), 0.9, (None, True), None, False),                # tests gave no rate
    ({}, 0.5, (None, False), None, False),
])
def test_gate(records, threshold, tests, score, passed):
    verdict = scoring.gate(records, threshold, *tests)
    assert verdict.passed is passed
    assert verdict.score == (None if score is None else pytest.approx(score))


@pytest.mark.parametrize("records,threshold,score,passed", [
    (recs((OK, 0.95), (OK, 0.9), (OK, 0.85)), 0.9, 0.9, True),
    (recs((OK, 0.95), (OK, 0.9), (OK, 0.5)), 0.9, None, False),    # 3 needed, 3 gave: 0.78
    (recs((OK, 0.95), (OK, None), (OK, None)), 0.8, None, False),  # only 1 of 3 gave one
    (recs((OK, 0.95), (FAIL, 0.99), (OK, 0.9)), 0.6, 0.925, True),  # a failure's score is out
    (recs((FAIL, 0.99)), 0.5, None, False),
])
def test_consensus(records, threshold, score, passed):
    verdict = scoring.consensus(records, threshold)
    assert verdict.passed is passed
    if passed:
        assert verdict.score == pytest.approx(score)


PASSED = {"gate_passed": True, "consensus_passed": True, "deliverables": ["a.py"]}


@pytest.mark.parametrize("record,facts,decision,why", [
    ({"status": OK, "decision": "PROCEED", "reason": "done"}, PASSED, "PROCEED", "done"),
    ({"status": OK, "decision": " proceed "}, PASSED, "PROCEED", "decided PROCEED"),
    ({"status": OK, "decision": "ABORT", "reason": "wrong epic"}, PASSED, "ABORT", "wrong epic"),
    ({"status": OK, "decision": "PROCEED"}, {**PASSED, "deliverables": []}, "ITERATE",
     "no deliverables"),
    ({"status": OK, "decision": "PROCEED"}, {**PASSED, "gate_passed": False}, "ITERATE",
     "the gate failed"),
    ({"status": OK, "decision": "PROCEED"}, {**PASSED, "missing": ["a.py"]}, "ITERATE",
     "deliverables missing from the workspace: a.py"),
    ({"status": OK, "decision": "PROCEED"}, {**PASSED, "consensus_passed": False}, "ITERATE",
     "no consensus"),
    ({"status": OK, "decision": "SHIP IT"}, PASSED, "ITERATE", "no valid decision"),
    ({"status": OK}, PASSED, "ITERATE", "no valid decision"),
    ({"status": FAIL, "decision": "PROCEED", "error": "boom"}, PASSED, "ITERATE", "boom"),
    ({"status": "timeout"}, PASSED, "ITERATE", "failed"),
    (None, PASSED, "ITERATE", "no record"),
])
def test_decision_guard_never_turns_errors_into_proceed(record, facts, decision, why):
    got, reason = scoring.guard_decision(record, **facts)
    assert got == decision and why in reason


@pytest.mark.parametrize("output,exit_code,rate", [
    ("==== 3 passed, 1 failed in 0.1s ====", 1, 0.75),
    ("==== 5 passed in 0.1s ====", 0, 1.0),
    ("2 failed, 2 passed, 1 error", 1, 0.4),
    ("Ran 4 tests in 0.001s\n\nFAILED (failures=1, errors=1)", 1, 0.5),
    ("Ran 3 tests in 0.001s\n\nOK", 0, 1.0),
    ("no summary at all", 0, 1.0),
    ("no summary at all", 2, 0.0),
    ("killed", None, None),
])
def test_pass_rate(output, exit_code, rate):
    assert scoring.pass_rate(output, exit_code) == rate


CLAUDE_OK = {"type": "result", "is_error": False, "total_cost_usd": 0.02,
             "usage": {"input_tokens": 10, "output_tokens": 5},
             "result": 'Done.\n{"confidence": 0.9, "deliverables": ["a.py"], "feedback": "ok"}'}


@pytest.mark.parametrize("output,exit_code,expected", [
    ('work\n{"confidence": 0.8, "deliverables": ["x"]}', 0,
     {"status": OK, "confidence": 0.8, "deliverables": ["x"]}),
    ("no report", 0, {"status": OK, "confidence": None, "deliverables": None}),
    ('{"confidence": 7}', 0, {"status": OK, "confidence": None}),        # nonsense is missing
    ('{"confidence": true}', 0, {"status": OK, "confidence": None}),
    ('{"confidence": 0.9}', 3, {"status": FAIL, "error": "exited with 3"}),
    (json.dumps(CLAUDE_OK), 0, {"status": OK, "confidence": 0.9, "cost_usd": 0.02,
                                "input_tokens": 10, "deliverables": ["a.py"]}),
    (json.dumps({**CLAUDE_OK, "result": "Done, all good."}), 0,
     {"status": FAIL, "confidence": None, "cost_usd": 0.02}),          # no report: not done
    (json.dumps({"type": "result", "is_error": True, "api_error_status": 429,
                 "result": "rate limited"}), 1,
     {"status": FAIL, "provider_error": "rate limited"}),
    (json.dumps({"type": "result", "is_error": True, "api_error_status": 400,
                 "result": "bad request"}), 1,
     {"status": FAIL, "provider_error": None, "error": "bad request"}),
    (json.dumps({"type": "result", "is_error": True, "result": "API Error: overloaded"}), 1,
     {"status": FAIL, "provider_error": "API Error: overloaded"}),
    (json.dumps({"type": "result", "is_error": False, "result": '{"confidence": 0.9}',
                 "permission_denials": [{"tool_name": "Write", "tool_input": {
                     "file_path": "/workspace/app.py"}}]}), 0,
     {"status": FAIL, "confidence": 0.9,
      "error": "tools were denied to the agent: Write(/workspace/app.py)"}),
    (json.dumps({"type": "result", "is_error": True, "api_error_status": 401,
                 "result": "Failed to authenticate"}), 1,
     {"status": FAIL, "provider_error": None, "key_refused": True}),
])
def test_outcome_parsing(output, exit_code, expected):
    parsed = outcome.parse(output, exit_code).to_dict()
    assert {k: parsed[k] for k in expected} == expected


STREAM = [{"type": "system", "subtype": "init", "model": "glm-4.6"},
          {"type": "assistant", "message": {"content": [
              {"type": "text", "text": '{"confidence": 0.99, "deliverables": ["fake"]}'}]}},
          {**CLAUDE_OK, "subtype": "success"}]


def lines(*events) -> str:
    return "".join(json.dumps(event) + "\n" for event in events)


def test_a_claude_stream_is_judged_by_its_result_event():
    parsed = outcome.parse("claude warned on stderr\n" + lines(*STREAM), 0, claude_agent=True)
    assert (parsed.status, parsed.confidence, parsed.deliverables) == (OK, 0.9, ["a.py"])
    assert (parsed.input_tokens, parsed.output_tokens, parsed.cost_usd) == (10, 5, 0.02)
    # the single JSON document of --output-format json is read the same way
    assert outcome.parse(json.dumps(CLAUDE_OK), 0, claude_agent=True) == \
        outcome.parse(lines(*STREAM), 0, claude_agent=True)


@pytest.mark.parametrize("output,exit_code", [
    (lines(*STREAM[:2]), 0),  # a report in an assistant event is not a result
    (lines(*STREAM[:2]) + '{"type": "resu', 0),  # cut off mid-event
    ("", 0),
    (lines(*STREAM[:1]) + "Error: something broke\n", 1),
])
def test_a_claude_stream_without_a_result_event_failed(output, exit_code):
    parsed = outcome.parse(output, exit_code, claude_agent=True)
    assert parsed.status == FAIL and parsed.exit_code == exit_code
    assert (parsed.confidence, parsed.deliverables, parsed.cost_usd) == (None, None, None)
    assert parsed.error.startswith("no result event")
    assert output.strip()[-100:] in parsed.error  # what it said last, as it said it


@pytest.mark.parametrize("document,message", [
    ({"id": "x", "name": "X"}, None),
    ({"id": "x", "name": "X", "kind": "scripted", "command": ["echo", "{task_id}"]}, None),
    ({"name": "X"}, "'id' is required"),
    ({"id": "x y", "name": "X"}, "profile id"),
    ({"id": "x", "name": "X", "colour": "red"}, "unknown field(s) colour"),
    ({"id": "x", "name": "X", "kind": "robot"}, "kind must be one of"),
    ({"id": "x", "name": "X", "role": "boss"}, "role must be one of"),
    ({"id": "x", "name": "X", "timeout": -1}, "timeout must be a non-negative number"),
    ({"id": "x", "name": "X", "command": "rm -rf /"}, "list of strings"),
    ({"id": "x", "name": "X", "command": ["echo", "{secret}"]}, "unknown placeholder(s) secret"),
])
def test_profile_parsing(document, message):
    if message is None:
        assert profiles.parse(document, "p.toml").id == "x"
    else:
        with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
            profiles.parse(document, "p.toml")


@pytest.mark.parametrize("entry,port", [
    ("8080:80", Port(80)),
    ("127.0.0.1:8080:80", Port(80, "127.0.0.1")),
    ("[::1]:8080:80/udp", Port(80, "::1", "udp")),
    ("${WEB_PORT:-8080}:80", Port(80)),
    ("6379", Port(6379)),
    ({"target": 5432, "published": 5432, "host_ip": "0.0.0.0"}, Port(5432, "0.0.0.0")),
    ({"target": 53, "protocol": "udp"}, Port(53, None, "udp")),
])
def test_compose_port_parsing(entry, port):
    assert parse_port(entry) == port


@pytest.mark.parametrize("entry", ["8000-8010:8000-8010", "8080:http"])
def test_compose_ports_cfn_cannot_lease_are_bad_input(entry):
    with pytest.raises(InvalidInput, match="publish single ports"):
        parse_port(entry)


ROOT = Path("/")


@pytest.mark.parametrize("env,name,value,source", [
    ({}, "key_ttl", 604800, "default"),
    ({"CFN_KEY_TTL": "60"}, "key_ttl", 60, "env CFN_KEY_TTL"),
    ({"CFN_REDIS_URL": "redis://a", "REDIS_URL": "redis://b"}, "redis_url", "redis://a",
     "env CFN_REDIS_URL"),
    ({"REDIS_URL": ""}, "redis_url", None, "default"),                  # empty is unset
    ({"CFN_CUSTOM_ROUTING": "yes"}, "custom_routing", True, "env CFN_CUSTOM_ROUTING"),
    ({"CFN_CUSTOM_ROUTING": "off"}, "custom_routing", False, "env CFN_CUSTOM_ROUTING"),
    ({"CFN_FALLBACK_PROVIDERS": "zai, kimi,"}, "fallback_providers", ("zai", "kimi"),
     "env CFN_FALLBACK_PROVIDERS"),
    ({"DEFAULT_PROVIDER": "zai"}, "default_provider", "zai", "env DEFAULT_PROVIDER"),
    ({"CFN_AGENT_NETWORK": "cfn-net"}, "agent_network", "cfn-net", "env CFN_AGENT_NETWORK"),
    ({"CFN_COMPOSE": "podman-compose"}, "compose", "podman-compose", "env CFN_COMPOSE"),
    ({"CFN_PROVIDER_ZAI_MODEL": "glm-5"}, "providers.zai.model", "glm-5",
     "env CFN_PROVIDER_ZAI_MODEL"),
])
def test_config_resolution_with_an_explicit_environment(env, name, value, source):
    config = resolve(env=env, cwd=ROOT)
    assert (config.shown(name) if name.startswith("providers.") else getattr(config, name)) \
        == value
    assert config.sources[name] == source


@pytest.mark.parametrize("env,message", [
    ({"CFN_CONNECT_TIMEOUT": "soon"}, "connect_timeout from env CFN_CONNECT_TIMEOUT"),
    ({"CFN_CONNECT_TIMEOUT": "inf"}, "must be more than 0 and at most"),
    ({"CFN_RETRIES": "-1"}, "must be 0 to"),
    ({"CFN_CUSTOM_ROUTING": "maybe"}, "must be on or off"),
    ({"CFN_PROVIDER_ZAI_KEY": "sk-123"}, "a key never goes here"),
])
def test_bad_configuration_is_bad_input_naming_its_source(env, message):
    with pytest.raises(InvalidInput, match=message):
        resolve(env=env, cwd=ROOT)


@pytest.mark.parametrize("toml,check", [
    ('[providers.zai]\nmodel = "glm-5"\nkey_env = "MY_ZAI"\n',
     lambda c: (c.providers["zai"].model, c.providers["zai"].key_env) == ("glm-5", "MY_ZAI")),
    ('[providers.local]\nbase_url = "http://127.0.0.1:9"\nmodel = "m"\n',
     lambda c: c.providers["local"].key_env is None),
    ('fallback_providers = ["zai", "kimi"]\ncustom_routing = true\n',
     lambda c: c.fallback_providers == ("zai", "kimi") and c.custom_routing is True),
])
def test_cfn_toml_providers_and_routing(tmp_path, toml, check):
    (tmp_path / "cfn.toml").write_text(toml)
    assert check(resolve(env={}, cwd=tmp_path))


@pytest.mark.parametrize("toml,message", [
    ('[providers.zai]\napi_key = "sk-1"\n', "a key never goes here"),
    ('[providers.new]\nmodel = "m"\n', "needs base_url and model"),
    ('providers = "zai"\n', "providers must be tables"),
    ('[providers."bad name"]\nmodel = "m"\n', "provider"),
])
def test_bad_provider_tables_are_refused(tmp_path, toml, message):
    (tmp_path / "cfn.toml").write_text(toml)
    with pytest.raises(InvalidInput, match=message):
        resolve(env={}, cwd=tmp_path)


@pytest.mark.parametrize("url,runtime,sandbox,network,seen", [
    ("redis://admin:pw@redis:6379/0", "container", False, "cfn-net",
     ("redis://redis:6379/0", {})),                      # never the operator's password
    ("unix://:pw@/s/redis.sock", "process", True, None,
     ("unix:///run/cfn/redis.sock", {"/s/redis.sock": "/run/cfn/redis.sock"})),
    ("unix:///s/redis.sock", "process", False, None, ("unix:///s/redis.sock", {})),
    ("redis://127.0.0.1:6379", "container", False, "host", ("redis://127.0.0.1:6379", {})),
])
def test_the_redis_url_an_agent_sees(url, runtime, sandbox, network, seen):
    from cfn.agents.spawn import _agent_redis_url

    assert _agent_redis_url(url, runtime, sandbox, network) == seen


def test_an_agent_gets_a_sockets_directory_only_when_it_holds_that_socket_alone(tmp_path):
    """A directory of sockets may hold a container engine's: the agent gets the file then."""
    import socket

    from cfn.agents.spawn import _agent_redis_url

    for name in ("alone/redis.sock", "shared/redis.sock", "shared/docker.sock"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        socket.socket(socket.AF_UNIX).bind(str(tmp_path / name))
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    assert _agent_redis_url(f"unix://{alone}/redis.sock", "process", True, None) == \
        ("unix:///run/cfn/redis.sock", {str(alone): "/run/cfn"})
    assert _agent_redis_url(f"unix://{shared}/redis.sock", "process", True, None) == \
        ("unix:///run/cfn/redis.sock", {f"{shared}/redis.sock": "/run/cfn/redis.sock"})
