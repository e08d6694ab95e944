import json
import os
import stat
import time

import jwt
import pytest

from cfn import tokens
from cfn.errors import InvalidInput, NegativeOutcome

SECRET = "s" * 40


def test_issue_and_verify_round_trip():
    token = tokens.issue(SECRET, agent_id="coder-1", task_id="t1", ttl=60, role="implementer")
    claims = tokens.verify(SECRET, token)
    assert (claims["sub"], claims["task_id"], claims["role"], claims["aud"]) == (
        "coder-1", "t1", "implementer", "cfn-agents")
    assert claims["exp"] - claims["iat"] == 60


def test_verifies_offline_with_nothing_but_the_secret():
    token = tokens.issue(SECRET, agent_id="a", task_id="t")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="cfn-agents")
    assert claims["sub"] == "a"


def test_expired_wrong_audience_and_tampered_tokens_fail_with_the_reason():
    now = int(time.time())
    base = {"sub": "a", "task_id": "t", "iss": "cfn", "iat": now}
    expired = jwt.encode({**base, "aud": "cfn-agents", "exp": now - 10}, SECRET, "HS256")
    with pytest.raises(NegativeOutcome, match="expired"):
        tokens.verify(SECRET, expired)
    elsewhere = jwt.encode({**base, "aud": "other", "exp": now + 60}, SECRET, "HS256")
    with pytest.raises(NegativeOutcome, match="audience"):
        tokens.verify(SECRET, elsewhere)
    good = tokens.issue(SECRET, agent_id="a", task_id="t")
    header, payload, signature = good.split(".")
    forged = jwt.utils.base64url_encode(json.dumps(
        {**jwt.decode(good, options={"verify_signature": False}), "role": "admin"}).encode())
    with pytest.raises(NegativeOutcome, match="tampered"):
        tokens.verify(SECRET, f"{header}.{forged.decode()}.{signature}")
    with pytest.raises(NegativeOutcome, match="tampered"):
        tokens.verify("t" * 40, good)
    none_alg = jwt.encode({**base, "aud": "cfn-agents", "exp": now + 60}, None, "none")
    with pytest.raises(NegativeOutcome):
        tokens.verify(SECRET, none_alg)


def test_an_mcp_servers_key_checks_its_tokens_and_signs_none_for_cfn_or_the_others():
    key = tokens.mcp_key(SECRET, "playwright")
    assert key != SECRET and key == tokens.mcp_key(SECRET, "playwright")
    token = tokens.issue(key, agent_id="coder-1", task_id="t1", ttl=60,
                         audience=tokens.mcp_audience("playwright"))
    assert tokens.verify(key, token, tokens.mcp_audience("playwright"))["sub"] == "coder-1"
    with pytest.raises(NegativeOutcome, match="signature does not match"):
        tokens.verify(SECRET, token, tokens.mcp_audience("playwright"))
    with pytest.raises(NegativeOutcome, match="signature does not match"):
        tokens.verify(tokens.mcp_key(SECRET, "n8n"), token, tokens.mcp_audience("playwright"))
    with pytest.raises(NegativeOutcome, match="not for audience 'cfn-agents'"):
        tokens.verify(key, token)  # nor would cfn take it, even from a server's key


def test_secret_is_generated_once_with_mode_0600(tmp_path):
    first = tokens.signing_secret(None, tmp_path)
    assert tokens.signing_secret(None, tmp_path) == first and len(first) >= 32
    mode = stat.S_IMODE(os.stat(tmp_path / "token.secret").st_mode)
    assert mode == 0o600
    assert tokens.signing_secret(None, tmp_path / "other") != first  # no built-in default


def test_short_configured_secret_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="at least 32"):
        tokens.signing_secret("short", tmp_path)


def test_cli_issue_and_verify_without_redis(cfn, project):
    dead = {"REDIS_URL": "redis://127.0.0.1:1"}  # tokens need no Redis and no database
    issued = cfn("token", "issue", "--agent-id", "a1", "--task-id", "t1", "--ttl", "60",
                 extra_env=dead)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    ok = cfn("token", "verify", "--json", input=token + "\n", extra_env=dead)
    assert ok.returncode == 0 and json.loads(ok.stdout)["sub"] == "a1"
    head, body, sig = token.split(".")
    flipped = sig[:5] + ("A" if sig[5] != "A" else "B") + sig[6:]
    bad = cfn("token", "verify", input=f"{head}.{body}.{flipped}")
    assert bad.returncode == 1 and "tampered" in bad.stderr
    short = cfn("token", "issue", "--agent-id", "a", "--task-id", "t",
                extra_env={"CFN_TOKEN_SECRET": "short"})
    assert short.returncode == 2


def test_cli_gives_an_mcp_server_its_key_and_checks_its_tokens(cfn):
    key = cfn("token", "mcp-key", "probe").stdout.strip()
    token = tokens.issue(key, agent_id="coder-1", task_id="t1", ttl=60,
                         audience=tokens.mcp_audience("probe"))
    checked = cfn("token", "verify", "--mcp-server", "probe", "--json", input=token)
    assert checked.returncode == 0 and json.loads(checked.stdout)["sub"] == "coder-1"
    assert cfn("token", "verify", "--mcp-server", "n8n", input=token).returncode == 1
    assert cfn("token", "verify", input=token).returncode == 1
