"""`cfn doctor`: is this machine ready to coordinate agents? Each check says ok, warning or
error, and how to fix what is not ok.

Python, Redis and the project database are required: cfn cannot work without them. The
rest (a container engine and the agent image, the `claude` CLI, provider keys, a compose
tool) are needed only by some runtimes and commands, so missing ones are warnings. A check
never raises: whatever goes wrong becomes its result. No key is ever read into a result,
only whether its variable is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass

from cfn.config import Config, Provider, mask_url

OK, WARNING, ERROR = "ok", "warning", "error"
MIN_PYTHON = (3, 10)
CLAUDE_VERSION_TIMEOUT_S = 15


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warning | error
    detail: str
    fix: str = ""
    required: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def run_checks(config: Config, environ: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order a user fixes things: Python, Redis, the database, then
    what agents need."""
    environ = os.environ if environ is None else environ
    return [
        python_check(),
        *_guarded("redis", True, lambda: redis_checks(config)),
        *_guarded("database", True, lambda: [database_check(config)]),
        *_guarded("container engine", False, lambda: container_checks(config, environ)),
        *_guarded("claude", False, lambda: [claude_check()]),
        *provider_checks(config, environ),
        *_guarded("compose", False, lambda: [compose_check(config)]),
    ]


def healthy(checks: list[Check]) -> bool:
    """True unless a required check failed."""
    return not any(check.required and check.status == ERROR for check in checks)


def _guarded(name: str, required: bool, checks: Callable[[], list[Check]]) -> list[Check]:
    """The checks' results; an unexpected error is the failed check itself, never a
    traceback (the typed errors of cfn already end with their fix)."""
    from cfn.errors import CfnError

    try:
        return checks()
    except CfnError as exc:  # its message ends with the fix
        return [Check(name, ERROR if required else WARNING, str(exc), "as the detail says",
                      required)]
    except Exception as exc:  # noqa: BLE001 - the doctor reports every failure as a check
        if os.environ.get("CFN_DEBUG"):
            raise
        return [Check(name, ERROR if required else WARNING, f"{type(exc).__name__}: {exc}",
                      "CFN_DEBUG=1 cfn doctor shows the traceback", required)]


def python_check() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", ERROR, f"Python {version}", "install Python 3.10 or newer",
                     True)
    return Check("python", OK, f"Python {version} ({sys.executable})", required=True)


# --- Redis -------------------------------------------------------------------------------

def redis_checks(config: Config) -> list[Check]:
    """Reachable (required), then what makes it safe for agents: persistence, no open
    default user, ACL read selectors."""
    from cfn.coordination.agents import has_read_selectors, lets_anyone_in
    from cfn.errors import CfnError
    from cfn.project import Project

    which = mask_url(str(config.redis_url)) if config.redis_url else "the embedded server"
    with Project(config) as project:
        try:
            r, url = project.redis, project.redis_url
            version = r.info("server").get("redis_version", "?")
        except CfnError as exc:
            return [Check("redis", ERROR, f"{which}: {exc}",
                          "start that Redis, or point REDIS_URL at one that runs (unset it "
                          "to use the embedded server)", True)]
        checks = [Check("redis", OK, f"Redis {version} at {which}", required=True),
                  _persistence(r)]
        if lets_anyone_in(url):
            checks.append(Check("redis access", WARNING,
                                "the default user lets anyone in without a password",
                                "give Redis a password (requirepass, or an ACL default user "
                                "with one): agents' ACL users protect nothing otherwise"))
        else:
            checks.append(Check("redis access", OK, "no one gets in without a password"))
        checks.append(Check("redis acl", OK, "read selectors (%R~) available")
                      if has_read_selectors(r) else
                      Check("redis acl", WARNING, f"Redis {version} has no ACL read selectors",
                            "use Redis 7 or newer (or Valkey): agents' read-only key rules "
                            "need it"))
        return checks


def _persistence(r) -> Check:
    """AOF and RDB as the server has them; neither means a restart loses the coordination
    state (SQLite still has the records)."""
    from redis.exceptions import RedisError

    aof = bool(int(r.info("persistence").get("aof_enabled", 0)))
    try:
        save = str(r.config_get("save").get("save", "")).strip()
    except RedisError:  # CONFIG may be refused (managed Redis, ACL): say what is known
        save = "unknown"
    detail = f"AOF {'on' if aof else 'off'}, RDB {save or 'off'}"
    if aof or save:
        return Check("redis persistence", OK, detail)
    return Check("redis persistence", WARNING, detail,
                 "a restart loses signals and results in flight: CONFIG SET appendonly yes "
                 "(the embedded server has it on)")


# --- the database --------------------------------------------------------------------------

def database_check(config: Config) -> Check:
    """The database opens and is migrated to the schema this cfn knows, as every command
    that uses it does (a database changed by hand or by a newer cfn is refused here)."""
    from cfn.db import db_path, migrate, open_db

    path = db_path(config.home)
    database = open_db(config.home)
    try:
        version = migrate.current_version(database)
    finally:
        database.close()
    return Check("database", OK, f"{path}: schema version {version}, migrations current",
                 required=True)


# --- agents' runtimes and tools ----------------------------------------------------------

def container_checks(config: Config, environ: Mapping[str, str]) -> list[Check]:
    """The container engine at DOCKER_HOST answers, and has the agent image."""
    import importlib.util

    if importlib.util.find_spec("docker") is None:
        return [Check("container engine", WARNING, "the docker SDK is not installed",
                      "pip install 'cfn[container]' (container agents need it)")]
    from cfn.agents.runtimes.container import client
    from cfn.errors import CfnError

    where = environ.get("DOCKER_HOST", "the default socket")
    try:
        engine = client(environ)
    except CfnError:
        return [Check("container engine", WARNING, f"no engine answers at {where}",
                      "start Docker, or `podman system service --time=0 "
                      "unix:///run/podman/podman.sock` and set DOCKER_HOST to it")]
    try:
        version = engine.version().get("Version", "?")
        image = str(config.agent_image)
        present = bool(engine.images.list(name=image))
    finally:
        engine.close()
    engine_check = Check("container engine", OK, f"engine {version} at {where}")
    if present:
        return [engine_check, Check("agent image", OK, image)]
    return [engine_check, Check("agent image", WARNING, f"{image} is not in the engine",
                                "cfn image build")]


def claude_check() -> Check:
    """The `claude` CLI that Claude agents run, and its version."""
    path = shutil.which("claude")
    if path is None:
        return Check("claude", WARNING, "claude is not on PATH",
                     "npm install -g @anthropic-ai/claude-code (Claude agents need it)")
    done = subprocess.run([path, "--version"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=CLAUDE_VERSION_TIMEOUT_S)
    said = (done.stdout or done.stderr).strip().splitlines()
    if done.returncode != 0 or not said:
        return Check("claude", WARNING, f"{path} --version exited {done.returncode}",
                     "reinstall Claude Code: npm install -g @anthropic-ai/claude-code")
    return Check("claude", OK, f"{said[0]} ({path})")


def provider_checks(config: Config, environ: Mapping[str, str]) -> list[Check]:
    """Per provider: an endpoint, and whether its key's variable is set (never the key).
    Only providers that routing would pick warn when they cannot be used."""
    in_use = set(providers_in_use(config))
    return [_provider_check(provider, provider.name in in_use, environ)
            for _, provider in sorted(config.providers.items())]


def providers_in_use(config: Config) -> Iterator[str]:
    """The providers routing picks without an explicit choice, and the fallbacks."""
    from cfn import defaults

    if config.custom_routing:
        yield from (str(config.default_provider), str(config.cost_provider),
                    str(config.high_complexity_provider))
    else:
        yield defaults.ROUTING_OFF_PROVIDER
    yield from config.fallback_providers


def _provider_check(provider: Provider, in_use: bool, environ: Mapping[str, str]) -> Check:
    from cfn.routing import has_key

    name = f"provider {provider.name}"
    unusable = WARNING if in_use else OK
    unused = "" if in_use else " (routing does not pick it)"
    if not provider.base_url:
        return Check(name, unusable, f"no Anthropic-compatible endpoint{unused}",
                     f"set CFN_PROVIDER_{provider.name.upper()}_BASE_URL (e.g. to a proxy)"
                     if in_use else "")
    if provider.key_env is None:
        return Check(name, OK, "uses the claude CLI's own login")
    if has_key(provider, environ):
        return Check(name, OK, f"key in {provider.key_env}")
    return Check(name, unusable, f"no key: {provider.key_env} is not set{unused}",
                 f"export {provider.key_env}" if in_use else "")


def compose_check(config: Config) -> Check:
    """The compose tool that worktree stacks use (the `compose` setting, else the first
    found)."""
    from cfn.errors import NegativeOutcome
    from cfn.worktrees.compose import tool

    try:
        command = tool(str(config.compose) if config.compose else None)
    except NegativeOutcome:
        return Check("compose", WARNING, "no compose tool found",
                     "install Docker Compose or podman-compose (pip install podman-compose); "
                     "`cfn worktree up` needs one to start a stack")
    if shutil.which(command[0]) is None:
        return Check("compose", WARNING, f"{' '.join(command)} (the compose setting) is not "
                     "on PATH", "install it, or unset CFN_COMPOSE")
    return Check("compose", OK, " ".join(command))
