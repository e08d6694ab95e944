import json
from pathlib import Path

import pytest

from cfn import routing
from cfn.config import resolve
from cfn.errors import InvalidInput

KEYS = {"ANTHROPIC_API_KEY": "sk-a", "ZAI_API_KEY": "sk-z", "KIMI_API_KEY": "sk-k"}


def select(env, **kw):
    """Routing as configured by `env` alone (no cfn.toml), with keys looked up there too."""
    return routing.select(resolve(env=env, cwd=Path("/")), env, **kw)


def choose(env, **kw):
    return select({**KEYS, **env}, **kw).chain[0]


def test_routing_off_uses_anthropic_and_explicit_always_wins():
    assert choose({}, profile_provider="kimi", complexity="high") == "anthropic"
    assert choose({}, explicit="zai") == "zai"
    assert choose({"CFN_CUSTOM_ROUTING": "true"}, explicit="zai", profile_provider="kimi") == "zai"


def test_selection_order_as_in_the_seed():
    on = {"CFN_CUSTOM_ROUTING": "1"}
    assert choose(on, profile_provider="zai", complexity="high") == "zai"
    assert choose(on, complexity="high") == "anthropic"
    assert choose({**on, "HIGH_COMPLEXITY_PROVIDER": "kimi"}, complexity="high") == "kimi"
    assert choose(on, cost_sensitive=True) == "zai"
    assert choose(on) == "kimi"
    assert choose({**on, "DEFAULT_PROVIDER": "zai"}) == "zai"


@pytest.mark.parametrize("env,kw,message", [
    ({}, {"explicit": "nosuch"}, "unknown provider 'nosuch'"),
    ({"ZAI_API_KEY": ""}, {"explicit": "zai"}, "needs its API key in ZAI_API_KEY"),
    ({}, {"explicit": "gemini"}, "no Anthropic-compatible endpoint"),
    ({"CFN_FALLBACK_PROVIDERS": "zai,bogus"}, {}, "unknown fallback provider 'bogus'"),
])
def test_clear_errors(env, kw, message):
    with pytest.raises(InvalidInput, match=message):
        select({**KEYS, **env}, **kw)


def test_fallback_chain_skips_providers_without_a_key():
    route = select({"ANTHROPIC_API_KEY": "a", "ZAI_API_KEY": "z",
                    "CFN_FALLBACK_PROVIDERS": "openrouter, zai"})
    assert route.chain == ("anthropic", "zai") and route.skipped == ("openrouter",)


def test_a_key_only_goes_to_its_own_provider():
    table = resolve(env={}, cwd=Path("/")).providers
    resolved = routing.resolve(table["zai"], KEYS)
    env = routing.agent_env(resolved, None, {"PATH": "/bin", **KEYS, "OTHER_API_KEY": "x",
                                             "ANTHROPIC_BASE_URL": "https://evil"})
    assert env == {"PATH": "/bin", "ANTHROPIC_BASE_URL": "https://api.z.ai/api/anthropic",
                   "ANTHROPIC_MODEL": "glm-4.6", "ANTHROPIC_AUTH_TOKEN": "sk-z"}


def test_environment_overrides_the_table():
    table = resolve(env={"CFN_PROVIDER_ZAI_BASE_URL": "http://127.0.0.1:9",
                         "CFN_PROVIDER_ZAI_MODEL": "glm-5"}, cwd=Path("/")).providers
    assert (table["zai"].base_url, table["zai"].model) == ("http://127.0.0.1:9", "glm-5")
    with pytest.raises(InvalidInput, match="unknown field"):
        resolve(env={"CFN_PROVIDER_ZAI_COLOR": "red"}, cwd=Path("/"))


def test_model_follows_the_provider():
    table = resolve(env={}, cwd=Path("/")).providers
    assert routing.model_for("anthropic", "anthropic", "claude-opus-4-1", table) == \
        "claude-opus-4-1"
    assert routing.model_for("zai", "anthropic", "claude-opus-4-1", table) == "glm-4.6"


def test_cfn_route_explains_without_showing_keys(cfn):
    got = cfn("route", "coder", "--complexity", "high", "--json",
              extra_env={**KEYS, "CFN_CUSTOM_ROUTING": "1", "CFN_FALLBACK_PROVIDERS": "zai"})
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert [s["provider"] for s in doc["chain"]] == ["anthropic", "zai"]
    assert "high complexity" in doc["why"][0]
    assert "sk-a" not in got.stdout and "sk-z" not in got.stdout


def test_cfn_route_needs_no_key_and_names_the_one_a_spawn_needs(cfn):
    got = cfn("route", "coder", "--provider", "kimi", "--json", extra_env={"KIMI_API_KEY": ""})
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["chain"][0] == {
        "provider": "kimi", "base_url": "https://api.moonshot.ai/anthropic",
        "model": "kimi-latest", "key_env": "KIMI_API_KEY", "key_set": False}
    assert "export it" in got.stderr and "KIMI_API_KEY" in got.stderr
    said = cfn("route", "coder")
    assert said.returncode == 0, said.stderr
    assert "key from ANTHROPIC_API_KEY (not set)" in said.stdout
    assert "ANTHROPIC_API_KEY" in said.stderr
    with_key = cfn("route", "coder", extra_env={"ANTHROPIC_API_KEY": "sk-a"})
    assert "(not set)" not in with_key.stdout and with_key.stderr == ""


def test_a_preview_still_refuses_what_no_key_fixes():
    with pytest.raises(InvalidInput, match="no Anthropic-compatible endpoint"):
        select({}, explicit="gemini", preview=True)
    route = select({}, explicit="kimi", preview=True)
    assert route.chain == ("kimi",) and route.missing_key == ("kimi",)
    assert select(KEYS, explicit="kimi", preview=True).missing_key == ()


def test_anthropic_takes_an_api_key_and_third_parties_a_bearer_token():
    table = resolve(env={}, cwd=Path("/")).providers
    anthropic = routing.agent_env(routing.resolve(table["anthropic"], KEYS), None, {})
    assert anthropic["ANTHROPIC_API_KEY"] == "sk-a" and "ANTHROPIC_AUTH_TOKEN" not in anthropic
    zai = routing.agent_env(routing.resolve(table["zai"], KEYS), None, {})
    assert zai["ANTHROPIC_AUTH_TOKEN"] == "sk-z" and "ANTHROPIC_API_KEY" not in zai
    assert table["max"].auth == "api-key"


def test_keys_of_configured_providers_never_reach_another_provider(tmp_path):
    (tmp_path / "cfn.toml").write_text(
        '[providers.local]\nbase_url = "http://127.0.0.1:9"\nmodel = "m"\nkey_env = "LOCAL_KEY"\n')
    table = resolve(env={}, cwd=tmp_path).providers
    resolved = routing.resolve(table["zai"], KEYS)
    env = routing.agent_env(resolved, None, {"LOCAL_KEY": "sk-local", "PATH": "/bin"}, table)
    assert "LOCAL_KEY" not in env and env["ANTHROPIC_AUTH_TOKEN"] == "sk-z"
    assert routing.agent_env_without_credentials({"LOCAL_KEY": "x"}, table) == {}
