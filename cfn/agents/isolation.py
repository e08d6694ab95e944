"""What of the caller an agent may see. Agents are untrusted (a prompt can be injected into
any of them): a process agent inherits only an allowlist of the caller's environment, never
its cfn, Redis, cloud or provider credentials (docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# names that carry no credentials and that programs need to run, find CAs and reach proxies
PASSED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "TMPDIR", "LANG", "LANGUAGE",
    "PYTHONPATH", "VIRTUAL_ENV", "NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "DISABLE_TELEMETRY", "DISABLE_ERROR_REPORTING",
    "DISABLE_AUTOUPDATER", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
})
PASSED_PREFIXES = ("LC_",)


def inherited(environ: Mapping[str, str], extra: Iterable[str] = ()) -> dict[str, str]:
    """The part of the caller's environment an agent inherits: the allowlist, plus the names
    the operator added (the `agent_env` setting)."""
    allowed = PASSED | set(extra)
    return {k: v for k, v in environ.items() if k in allowed or k.startswith(PASSED_PREFIXES)}
