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

from collections.abc import Mapping
from dataclasses import dataclass, field

from cfn import defaults
from cfn.config import BUILTIN_PROVIDERS, Config, Provider
from cfn.errors import InvalidInput

# every variable through which a key could reach a provider it was not meant for
_CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
                    "ANTHROPIC_MODEL", "CLAUDE_CODE_OAUTH_TOKEN")


@dataclass(frozen=True)
class Route:
    """The routing decision for one agent: a chain of providers, first one first."""

    chain: tuple[str, ...]
    reasons: tuple[str, ...] = field(default_factory=tuple)
    skipped: tuple[str, ...] = field(default_factory=tuple)  # fallbacks without a key
    # a preview's chosen provider whose key is not in the environment (a spawn refuses it)
    missing_key: tuple[str, ...] = field(default_factory=tuple)


def select(
    config: Config, env: Mapping[str, str], *, profile_provider: str | None = None,
    explicit: str | None = None, complexity: str | None = None, cost_sensitive: bool = False,
    profile_fallback: tuple[str, ...] = (),
    preview: bool = False,
) -> Route:
    """Choose the provider chain for an agent and say why. `env` is only asked whether
    each provider's key is present. A `preview` (nothing will run) accepts a chosen
    provider without its key and names it in `missing_key`."""
    table = config.providers
    first, why = _first_choice(config, explicit, profile_provider, complexity, cost_sensitive)
    if first not in table:
        raise InvalidInput(f"unknown provider {first!r} ({why}); known: {', '.join(sorted(table))}")
    missing = () if has_key(table[first], env) else (first,)
    if preview:
        require_endpoint(table[first])
    else:
        resolve(table[first], env)  # the chosen provider must be usable: a clear error if not
    chain, skipped = [first], []
    for name in (*config.fallback_providers, *profile_fallback):
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
    return Route(tuple(chain), (why,), tuple(skipped), missing)


def _first_choice(config: Config, explicit, profile_provider, complexity,
                  cost_sensitive) -> tuple[str, str]:
    if explicit:
        return explicit, "given explicitly"
    if not config.custom_routing:
        return defaults.ROUTING_OFF_PROVIDER, "custom routing is off (CFN_CUSTOM_ROUTING)"
    if profile_provider:
        return profile_provider, "the agent profile names it"
    if complexity == "high":
        return config.high_complexity_provider, "high complexity (HIGH_COMPLEXITY_PROVIDER)"
    if cost_sensitive:
        return config.cost_provider, "cost sensitive (COST_PROVIDER)"
    return config.default_provider, "default (DEFAULT_PROVIDER)"


@dataclass(frozen=True)
class Resolved:
    provider: Provider
    key: str | None


def resolve(provider: Provider, env: Mapping[str, str]) -> Resolved:
    """The provider with its key from the environment; InvalidInput if it cannot be used."""
    require_endpoint(provider)
    if provider.key_env is None:
        return Resolved(provider, None)
    key = env.get(provider.key_env)
    if not key:
        raise InvalidInput(f"provider {provider.name} needs its API key in {provider.key_env}; "
                           "export it (never pass keys as arguments)")
    return Resolved(provider, key)


def require_endpoint(provider: Provider) -> None:
    """InvalidInput unless the provider has an Anthropic-compatible endpoint."""
    if not provider.base_url:
        raise InvalidInput(
            f"provider {provider.name} has no Anthropic-compatible endpoint; set "
            f"CFN_PROVIDER_{provider.name.upper()}_BASE_URL (e.g. to a proxy)")


def has_key(provider: Provider, env: Mapping[str, str]) -> bool:
    """True if the provider needs no key (the CLI's login) or its key is in `env`."""
    return provider.key_env is None or bool(env.get(provider.key_env))


def agent_env_without_credentials(base: Mapping[str, str],
                                  table: Mapping[str, Provider] | None = None) -> dict[str, str]:
    """`base` without any variable that could carry a provider key (of the built-in
    providers and of every provider in `table`)."""
    providers = (*BUILTIN_PROVIDERS, *(table or {}).values())
    known = {p.key_env for p in providers if p.key_env}
    return {k: v for k, v in base.items()
            if k not in _CREDENTIAL_VARS and k not in known and not k.endswith("_API_KEY")}


def agent_env(resolved: Resolved, model: str | None, base: Mapping[str, str],
              table: Mapping[str, Provider] | None = None) -> dict[str, str]:
    """`base` without any provider credentials, plus this provider's URL, key and model."""
    env = agent_env_without_credentials(base, {**(table or {}),
                                               resolved.provider.name: resolved.provider})
    env["ANTHROPIC_BASE_URL"] = resolved.provider.base_url
    env["ANTHROPIC_MODEL"] = model or resolved.provider.model
    if resolved.key is not None:
        # Claude Code sends ANTHROPIC_API_KEY as x-api-key, ANTHROPIC_AUTH_TOKEN as a bearer
        variable = "ANTHROPIC_API_KEY" if resolved.provider.auth == "api-key" \
            else "ANTHROPIC_AUTH_TOKEN"
        env[variable] = resolved.key
    return env


def model_for(provider: str, profile_provider: str | None, profile_model: str | None,
              table: Mapping[str, Provider]) -> str:
    """The profile's model when it was written for this provider, else the provider's default."""
    if profile_model and profile_provider in (None, provider):
        return profile_model
    return table[provider].model
