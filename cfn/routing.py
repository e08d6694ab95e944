"""Provider routing: which Anthropic-compatible endpoint, model and key an agent gets.

Selection (with CFN_CUSTOM_ROUTING on), as in the seed: the agent profile's
provider, then task complexity (HIGH_COMPLEXITY_PROVIDER), then cost
sensitivity (COST_PROVIDER), then DEFAULT_PROVIDER. With it off, agents use
`anthropic`. An explicit provider always wins. The chain after the chosen
provider (CFN_FALLBACK_PROVIDERS, then the profile's `fallback`) is where an
agent moves when its provider fails with a rate limit, overload or 5xx.

A key only ever goes to its own provider: the agent's environment carries
that provider's key as ANTHROPIC_AUTH_TOKEN and every known key variable is
removed from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cfn.errors import InvalidInput


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str | None  # None: no Anthropic-compatible endpoint known; configure one
    model: str
    key_env: str | None  # None: the agent CLI's own login (e.g. a Claude Max subscription)


BUILTIN: dict[str, Provider] = {p.name: p for p in (
    Provider("anthropic", "https://api.anthropic.com", "claude-sonnet-4-5", "ANTHROPIC_API_KEY"),
    Provider("zai", "https://api.z.ai/api/anthropic", "glm-4.6", "ZAI_API_KEY"),
    Provider("kimi", "https://api.moonshot.ai/anthropic", "kimi-latest", "KIMI_API_KEY"),
    Provider("openrouter", "https://openrouter.ai/api", "anthropic/claude-3.5-sonnet",
             "OPENROUTER_API_KEY"),
    Provider("max", "https://api.anthropic.com", "claude-opus-4-1", None),
    Provider("gemini", None, "gemini-2.0-flash-exp", "GEMINI_API_KEY"),
    Provider("xai", "https://api.x.ai", "grok-beta", "XAI_API_KEY"),
)}

# every variable through which a key could reach a provider it was not meant for
_CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
                    "ANTHROPIC_MODEL", "CLAUDE_CODE_OAUTH_TOKEN")


def providers(env: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """The provider table: built-ins overridden by
    CFN_PROVIDER_<NAME>_{BASE_URL,MODEL,KEY_ENV} environment variables."""
    env = os.environ if env is None else env
    table = dict(BUILTIN)
    for name in list(table):
        prefix = f"CFN_PROVIDER_{name.upper()}_"
        fields = {k[len(prefix):].lower(): v for k, v in env.items() if k.startswith(prefix)}
        if fields:
            table[name] = _override(table[name], name, fields, "environment")
    return table


def _override(base: Provider, name: str, fields: Mapping[str, str], where: str) -> Provider:
    unknown = set(fields) - {"base_url", "model", "key_env"}
    if unknown:
        raise InvalidInput(f"provider {name} in {where}: unknown field(s) {', '.join(unknown)}; "
                           "use BASE_URL, MODEL, KEY_ENV")
    return replace(base, **{k: (v or None) if k == "key_env" else v for k, v in fields.items()})


@dataclass(frozen=True)
class Route:
    """The routing decision for one agent: a chain of providers, first one first."""

    chain: tuple[str, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)
    skipped: tuple[str, ...] = field(default_factory=tuple)  # fallbacks without a key


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").lower() in ("1", "true", "yes", "on")


def select(
    *, profile_provider: str | None = None, explicit: str | None = None,
    complexity: str | None = None, cost_sensitive: bool = False,
    profile_fallback: tuple[str, ...] = (), env: Mapping[str, str] | None = None,
    table: Mapping[str, Provider] | None = None,
) -> Route:
    """Choose the provider chain for an agent and say why."""
    env = os.environ if env is None else env
    table = providers(env) if table is None else table
    first, why = _first_choice(explicit, profile_provider, complexity, cost_sensitive, env)
    if first not in table:
        raise InvalidInput(f"unknown provider {first!r} ({why}); known: {', '.join(sorted(table))}")
    resolve(table[first], env)  # the chosen provider must be usable: a clear error if not
    chain, skipped = [first], []
    fallback = [p.strip() for p in env.get("CFN_FALLBACK_PROVIDERS", "").split(",") if p.strip()]
    for name in (*fallback, *profile_fallback):
        if name not in table:
            raise InvalidInput(f"unknown fallback provider {name!r}; known: "
                               f"{', '.join(sorted(table))}")
        if name in chain or name in skipped:
            continue
        try:
            resolve(table[name], env)
            chain.append(name)
        except InvalidInput:
            skipped.append(name)
    return Route(tuple(chain), (why,), tuple(skipped))


def _first_choice(explicit, profile_provider, complexity, cost_sensitive, env) -> tuple[str, str]:
    if explicit:
        return explicit, "given explicitly"
    if not _flag(env, "CFN_CUSTOM_ROUTING"):
        return "anthropic", "CFN_CUSTOM_ROUTING is off"
    if profile_provider:
        return profile_provider, "the agent profile names it"
    if complexity == "high":
        return env.get("HIGH_COMPLEXITY_PROVIDER") or "anthropic", "high complexity " \
            "(HIGH_COMPLEXITY_PROVIDER)"
    if cost_sensitive:
        return env.get("COST_PROVIDER") or "zai", "cost sensitive (COST_PROVIDER)"
    return env.get("DEFAULT_PROVIDER") or "kimi", "default (DEFAULT_PROVIDER)"


@dataclass(frozen=True)
class Resolved:
    provider: Provider
    key: str | None


def resolve(provider: Provider, env: Mapping[str, str]) -> Resolved:
    """The provider with its key from the environment; InvalidInput if it cannot be used."""
    if not provider.base_url:
        raise InvalidInput(
            f"provider {provider.name} has no Anthropic-compatible endpoint; set "
            f"CFN_PROVIDER_{provider.name.upper()}_BASE_URL (e.g. to a proxy)")
    if provider.key_env is None:
        return Resolved(provider, None)
    key = env.get(provider.key_env)
    if not key:
        raise InvalidInput(f"provider {provider.name} needs its API key in {provider.key_env}; "
                           "export it (never pass keys as arguments)")
    return Resolved(provider, key)


def agent_env_without_credentials(base: Mapping[str, str],
                                  extra_keys: tuple[str, ...] = ()) -> dict[str, str]:
    """`base` without any variable that could carry a provider key."""
    known = {p.key_env for p in BUILTIN.values() if p.key_env} | set(extra_keys)
    return {k: v for k, v in base.items()
            if k not in _CREDENTIAL_VARS and k not in known and not k.endswith("_API_KEY")}


def agent_env(resolved: Resolved, model: str | None, base: Mapping[str, str]) -> dict[str, str]:
    """`base` without any provider credentials, plus this provider's URL, key and model."""
    env = agent_env_without_credentials(base, (resolved.provider.key_env or "",))
    env["ANTHROPIC_BASE_URL"] = resolved.provider.base_url
    env["ANTHROPIC_MODEL"] = model or resolved.provider.model
    if resolved.key is not None:
        env["ANTHROPIC_AUTH_TOKEN"] = resolved.key
    return env


def model_for(provider: str, profile_provider: str | None, profile_model: str | None,
              table: Mapping[str, Provider]) -> str:
    """The profile's model when it was written for this provider, else the provider's default."""
    if profile_model and profile_provider in (None, provider):
        return profile_model
    return table[provider].model
