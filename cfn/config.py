"""Configuration, resolved in one place: flag > environment > project file > default.

The project file is `cfn.toml` at the project root: flat `name = value` pairs
using the setting names below, plus `[providers.NAME]` tables (base_url, model and
key_env, the *name* of the variable holding the key) and an `[mcp]` table (which MCP
servers an agent's skills give it: `[mcp.skills]` and `[mcp.servers.NAME]`). `cfn config`
prints each value and its source.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cfn import defaults
from cfn.errors import InvalidInput

CONFIG_FILE = "cfn.toml"
STATE_DIR = ".cfn"


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= defaults.MAX_SECONDS:  # nan fails it too
        raise ValueError(f"must be more than 0 and at most {defaults.MAX_SECONDS} seconds")
    return value


def _ttl(text: str) -> int:
    value = int(text)
    if not 0 < value <= defaults.MAX_SECONDS:
        raise ValueError(f"must be 1 to {defaults.MAX_SECONDS} seconds (30 days)")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if not 0 <= value <= defaults.MAX_COUNT:
        raise ValueError(f"must be 0 to {defaults.MAX_COUNT}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):  # nan fails it too
        raise ValueError("must be a number of 0 or more")
    return value


def _seconds_list(text: str) -> tuple[int, ...]:
    values = tuple(int(name) for name in _names(text))
    if not values or not all(0 <= v <= defaults.MAX_SECONDS for v in values):
        raise ValueError("give whole seconds from 0 up, comma-separated, e.g. 0,30,300")
    return values


def _id(text: str) -> str:
    from cfn.ids import validate_id

    try:
        return validate_id(text, "name")
    except InvalidInput as exc:
        raise ValueError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("must be from 0 to 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if not 0 < value <= defaults.MAX_COUNT:
        raise ValueError(f"must be 1 to {defaults.MAX_COUNT}")
    return value


def _redis_url(text: str) -> str:
    """A URL redis-py and the small client can connect to (checked without importing them,
    so a mistyped one exits 2 before anything connects or starts)."""
    from urllib.parse import parse_qs, urlsplit

    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("use redis://HOST:PORT/DB, rediss://HOST:PORT/DB or "
                         "unix:///PATH/TO/redis.sock")
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// URL needs the socket's absolute path, "
                         "e.g. unix:///run/redis/redis.sock")
    try:
        _ = parts.port  # out of 0-65535, or not a number
    except ValueError as exc:
        raise ValueError(f"{exc}; give a port from 1 to 65535, e.g. redis://localhost:6379"
                         ) from None
    for db in parse_qs(parts.query).get("db", []):
        if not db.isdigit():
            raise ValueError(f"db={db} is not a database number; use e.g. ?db=0")
    return text


def _switch(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be on or off (true/false, 1/0)")


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list (a TOML list arrives here joined by commas)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True)
class Setting:
    name: str
    env: tuple[str, ...]
    default: object
    help: str
    parse: Callable[[str], object] = str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", ("CFN_REDIS_URL", "REDIS_URL"), None,
            "Redis to coordinate through; unset: the project's embedded redis-server",
            _redis_url),
    Setting("redis_username", ("REDIS_USERNAME",), None, "Redis ACL user name"),
    Setting("redis_password", ("REDIS_PASSWORD",), None, "Redis password", secret=True),
    Setting("redis_fallback_1", ("REDIS_FALLBACK_1",), None,
            "second Redis, used when the primary is unreachable", _redis_url),
    Setting("connect_timeout", ("CFN_CONNECT_TIMEOUT",), defaults.CONNECT_TIMEOUT_S,
            "seconds to wait for a Redis connection", _seconds),
    Setting("retries", ("CFN_RETRIES",), defaults.RETRIES,
            "retries of connecting to Redis (0: fail at once, and never reconnect)",
            _non_negative_int),
    Setting("reconnect_window", ("CFN_RECONNECT_WINDOW",), defaults.RECONNECT_WINDOW_S,
            "seconds a lost Redis connection is tried again (waits: until their deadline)",
            _seconds),
    Setting("key_ttl", ("CFN_KEY_TTL",), defaults.KEY_TTL_S,
            "seconds signals, results and completions live after their last write", _ttl),
    Setting("max_payload", ("CFN_MAX_PAYLOAD",), defaults.MAX_PAYLOAD_BYTES,
            "largest value, payload or result accepted, in bytes", _positive_int),
    Setting("agent_image", ("CFN_AGENT_IMAGE",), defaults.AGENT_IMAGE,
            "image the container runtime runs agents in"),
    Setting("agent_network", ("CFN_AGENT_NETWORK",), None,
            "container network agents join (default: the engine's)"),
    Setting("agent_sandbox", ("CFN_AGENT_SANDBOX",), True,
            "run process agents under bubblewrap: the workspace writable; the state directory, "
            "your home and other processes out of sight (off: agents see all you see)",
            _switch),
    Setting("agent_env", ("CFN_AGENT_ENV",), (),
            "more variable names process agents inherit from the caller (besides PATH, HOME, "
            "locale, CA and proxy settings); never put secrets here", _names),
    Setting("agent_acl", ("CFN_AGENT_ACL",), True,
            "give each agent a Redis ACL user limited to its task's keys (off: agents connect "
            "with no credentials, so only a Redis that lets anyone in serves them)", _switch),
    Setting("agent_mcp", ("CFN_AGENT_MCP",), True,
            "give Claude agents cfn's own MCP server (a process beside each; off: they "
            "coordinate through the skill scripts only)", _switch),
    Setting("agent_id", ("CFN_AGENT_ID",), None,
            "the agent this process runs as (cfn sets it for the agents it spawns)"),
    Setting("agent_token", ("CFN_TOKEN",), None,
            "this agent's signed token; it signs the agent's reports (set by cfn)",
            secret=True),
    Setting("token_secret", ("CFN_TOKEN_SECRET",), None,
            "agent token signing secret; unset: generated once into the state directory",
            secret=True),
    Setting("custom_routing", ("CFN_CUSTOM_ROUTING",), False,
            "route agents by profile, complexity and cost (off: every agent uses anthropic)",
            _switch),
    Setting("default_provider", ("DEFAULT_PROVIDER",), defaults.DEFAULT_PROVIDER,
            "provider for agents with no other routing reason (custom routing on)"),
    Setting("cost_provider", ("COST_PROVIDER",), defaults.COST_PROVIDER,
            "provider for cost-sensitive agents (custom routing on)"),
    Setting("high_complexity_provider", ("HIGH_COMPLEXITY_PROVIDER",),
            defaults.HIGH_COMPLEXITY_PROVIDER,
            "provider for high-complexity tasks (custom routing on)"),
    Setting("fallback_providers", ("CFN_FALLBACK_PROVIDERS",), (),
            "providers an agent moves to, in order, after a rate limit or overload", _names),
    Setting("compose", ("CFN_COMPOSE",), None,
            "compose command for worktree stacks (default: docker compose, podman-compose, "
            "docker-compose, whichever is found)"),
    Setting("skill_approve_risk", ("CFN_SKILL_APPROVE_RISK",), defaults.SKILL_APPROVE_RISK,
            "skills auto-approve at this risk or lower (with enough coverage)", _fraction),
    Setting("skill_approve_coverage", ("CFN_SKILL_APPROVE_COVERAGE",),
            defaults.SKILL_APPROVE_COVERAGE,
            "skills auto-approve only at this test coverage or higher", _fraction),
    Setting("daemon_queue", ("CFN_DAEMON_QUEUE",), None,
            "the worker daemon's queue namespace, shared by every daemon serving it "
            "(default: the project directory's name)", _id),
    Setting("daemon_max_lifetime", ("CFN_DAEMON_MAX_LIFETIME",), defaults.DAEMON_MAX_LIFETIME_S,
            "seconds a worker daemon runs before it stops itself", _seconds),
    Setting("daemon_max_concurrent", ("CFN_DAEMON_MAX_CONCURRENT",),
            defaults.DAEMON_MAX_CONCURRENT, "worker runs one daemon makes at once",
            _positive_int),
    Setting("daemon_runs_per_hour", ("CFN_DAEMON_RUNS_PER_HOUR",),
            defaults.DAEMON_RUNS_PER_HOUR,
            "headless worker runs allowed per hour (all daemons of the queue together)",
            _non_negative_int),
    Setting("daemon_runs_per_day", ("CFN_DAEMON_RUNS_PER_DAY",), defaults.DAEMON_RUNS_PER_DAY,
            "headless worker runs allowed per day (all daemons of the queue together)",
            _non_negative_int),
    Setting("daemon_spend_per_day", ("CFN_DAEMON_SPEND_PER_DAY",),
            defaults.DAEMON_SPEND_PER_DAY_USD,
            "US dollars headless worker runs may spend per day (UTC); past it they are skipped",
            _non_negative_float),
    Setting("daemon_retry_backoff", ("CFN_DAEMON_RETRY_BACKOFF",),
            defaults.DAEMON_RETRY_BACKOFF_S,
            "seconds before each retry of a failed or abandoned worker job (their count is the "
            "number of retries); after the last, the job is a dead letter", _seconds_list),
    Setting("skill_escalate_risk", ("CFN_SKILL_ESCALATE_RISK",), defaults.SKILL_ESCALATE_RISK,
            "skills above this risk are escalated", _fraction),
)
_BY_NAME = {s.name: s for s in SETTINGS}


AUTH_STYLES = ("api-key", "bearer")


@dataclass(frozen=True)
class Provider:
    """An Anthropic-compatible endpoint. `key_env` names the variable holding its key
    (None: the agent CLI's own login, e.g. a Claude Max subscription); the key itself is
    read from the environment when an agent starts and is never configuration. `auth` is
    how the endpoint takes it: `api-key` (the x-api-key header, Anthropic's own API) or
    `bearer` (Authorization: Bearer, most Anthropic-compatible third parties)."""

    name: str
    base_url: str | None  # None: no Anthropic-compatible endpoint known; configure one
    model: str
    key_env: str | None
    auth: str = "bearer"


BUILTIN_PROVIDERS: tuple[Provider, ...] = (
    Provider("anthropic", "https://api.anthropic.com", "claude-sonnet-4-5", "ANTHROPIC_API_KEY",
             "api-key"),
    Provider("zai", "https://api.z.ai/api/anthropic", "glm-4.6", "ZAI_API_KEY"),
    Provider("kimi", "https://api.moonshot.ai/anthropic", "kimi-latest", "KIMI_API_KEY"),
    Provider("openrouter", "https://openrouter.ai/api", "anthropic/claude-3.5-sonnet",
             "OPENROUTER_API_KEY"),
    Provider("max", "https://api.anthropic.com", "claude-opus-4-1", None, "api-key"),
    Provider("gemini", None, "gemini-2.0-flash-exp", "GEMINI_API_KEY"),
    Provider("xai", "https://api.x.ai", "grok-beta", "XAI_API_KEY"),
)
PROVIDER_FIELDS = ("base_url", "model", "key_env", "auth")


@dataclass(frozen=True)
class McpTable:
    """Which MCP servers an agent gets: `skills` maps a profile's skill to server names,
    `servers` holds each server as Claude Code's --mcp-config entry (stdio: command, args,
    env; http or sse: url, headers). cfn adds each agent's signed token when it spawns it."""

    skills: Mapping[str, tuple[str, ...]]
    servers: Mapping[str, Mapping[str, object]]


# the seed's skill-based routing, to the servers of its MCP network
DEFAULT_MCP_SKILLS = {"browser-automation": ("playwright",), "redis-management": ("redis-tools",),
                      "workflow-automation": ("n8n",), "security-scanning": ("security-scanner",)}
DEFAULT_MCP_SERVERS = {
    "playwright": {"type": "http", "url": "http://mcp-playwright:8081/mcp"},
    "redis-tools": {"type": "http", "url": "http://mcp-redis-tools:8082/mcp"},
    "n8n": {"type": "http", "url": "http://mcp-n8n:8083/mcp"},
    "security-scanner": {"type": "http", "url": "http://mcp-security:8084/mcp"},
}
MCP_SERVER_FIELDS = {"stdio": ("type", "command", "args", "env"),
                     "http": ("type", "url", "headers"), "sse": ("type", "url", "headers")}
OWN_MCP_SERVER = "cfn"  # cfn's own, which every Claude agent gets
# what Claude Code's tool names (mcp__SERVER__tool) and the token variables can carry
_MCP_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# an env or header of a server whose name says it holds a secret: on argv, it may only
# refer to a variable of the agent's environment (${VAR}), never hold the value
_SECRET_NAME = re.compile(r"key|token|secret|password|auth|cookie|credential", re.I)
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# cfn sets these itself: the agent's token for the server
_MCP_RESERVED = {"env": "CFN_MCP_TOKEN", "headers": "authorization"}


def mcp_token_variable(server: str) -> str:
    """The agent's environment variable holding its token for `server`."""
    return f"CFN_MCP_{server.upper().replace('-', '_')}_TOKEN"


@dataclass(frozen=True)
class Config:
    """Resolved settings. `sources[name]` says where each value came from; provider
    fields appear there as `providers.NAME.FIELD`."""

    root: Path
    home: Path
    values: Mapping[str, object]
    sources: Mapping[str, str]
    providers: Mapping[str, Provider] = field(default_factory=dict)
    mcp: McpTable = field(default_factory=lambda: McpTable(DEFAULT_MCP_SKILLS,
                                                           DEFAULT_MCP_SERVERS))

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def shown(self, name: str) -> object:
        """The value as it may be displayed: secrets and URL passwords masked."""
        if name.startswith("providers."):
            _, provider, attribute = name.split(".")
            value = getattr(self.providers[provider], attribute)
            return mask_url(value) if attribute == "base_url" and value else value
        value = self.values[name]
        if value is None:
            return None
        setting = _BY_NAME.get(name)
        if setting and setting.secret:
            return "****"
        if name.endswith("url") or name.startswith("redis_fallback"):
            return mask_url(str(value))
        if isinstance(value, tuple):
            return ",".join(map(str, value))
        return value

    def to_dict(self) -> dict:
        """A JSON-able copy (secrets included) for a trusted process of ours, on a pipe."""
        return {"root": str(self.root), "home": str(self.home), "values": dict(self.values),
                "sources": dict(self.sources),
                "providers": {name: asdict(p) for name, p in self.providers.items()},
                "mcp": asdict(self.mcp)}

    @classmethod
    def from_dict(cls, data: Mapping) -> Config:
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data["values"].items()}
        mcp = data["mcp"]
        return cls(Path(data["root"]), Path(data["home"]), values, data["sources"],
                   {name: Provider(**p) for name, p in data["providers"].items()},
                   McpTable({k: tuple(v) for k, v in mcp["skills"].items()}, mcp["servers"]))


def mask_credentials(text: str) -> str:
    """`text` with the credentials of every URL in it masked (scheme://****@host)."""
    return re.sub(r"://[^/@\s]*@", "://****@", text)


def mask_url(url: str) -> str:
    """Replace the password in a URL with ****."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


def without_credentials(url: str) -> str:
    """`url` without a user name or password (an operator's URL may carry the admin's)."""
    from urllib.parse import urlsplit

    netloc = urlsplit(url).netloc
    return url.replace(netloc, netloc.rsplit("@", 1)[1], 1) if "@" in netloc else url


def ensure_home(home: Path) -> Path:
    """The state directory, created if need be and kept owner-only (0700, whatever the umask):
    it holds the database, the embedded Redis's admin password and the agents' logs. One
    an older cfn left open to others is closed too."""
    try:
        status = home.stat()
    except FileNotFoundError:
        home.mkdir(parents=True, exist_ok=True)
        status = home.stat()
    if status.st_mode & 0o077 and status.st_uid == os.getuid():
        home.chmod(0o700)
    return home


def find_root(start: Path) -> Path:
    """The nearest directory at or above `start` holding cfn.toml, .cfn or .git."""
    for directory in (start, *start.parents):
        if any((directory / marker).exists() for marker in (CONFIG_FILE, STATE_DIR, ".git")):
            return directory
    return start


def read_toml(path: Path, what: str) -> dict:
    """A TOML document; InvalidInput naming `what` and the file if it cannot be read."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{what} {path}: {exc}; fix or remove the file") from None


def _read_file(path: Path) -> dict[str, object]:
    data = read_toml(path, "cannot read")
    unknown = sorted(set(data) - set(_BY_NAME) - {"home", "providers", "mcp"})
    if unknown:
        raise InvalidInput(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(_BY_NAME))
        )
    return data


def _parse(setting: Setting, raw: object, source: str) -> object:
    if isinstance(raw, (list, tuple)):
        raw = ",".join(map(str, raw))
    try:
        str(raw).encode()  # bytes that are not UTF-8 arrive as lone surrogates
        return setting.parse(str(raw))
    except ValueError as exc:  # UnicodeEncodeError included
        raise InvalidInput(f"{setting.name} from {source} is {_shown(setting, raw)}: {exc}"
                           ) from None


def _shown(setting: Setting, raw: object) -> str:
    """A refused value as an error may say it: a secret, or a URL's credentials, masked."""
    if setting.secret:
        return "****"
    return mask_credentials(repr(raw)) if setting.parse is _redis_url else repr(raw)


def resolve(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve every setting: explicit flag > environment variable > cfn.toml > default."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    unknown = sorted(set(flags) - set(_BY_NAME))
    if unknown:
        raise InvalidInput(f"unknown setting(s) {', '.join(unknown)}; known: "
                           + ", ".join(sorted(_BY_NAME)))
    env = os.environ if env is None else env
    root = find_root((cwd or Path.cwd()).resolve())
    config_path = root / CONFIG_FILE
    file_values = _read_file(config_path) if config_path.is_file() else {}

    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        value, source = _lookup(setting, flags, env, file_values, config_path)
        values[setting.name] = value if source == "default" else _parse(setting, value, source)
        sources[setting.name] = source

    home, sources["home"] = _home(env, file_values, root, config_path)
    values["home"] = str(home)
    providers = _providers(env, file_values.get("providers", {}), config_path, sources)
    return Config(root=root, home=home, values=values, sources=sources, providers=providers,
                  mcp=_mcp(file_values.get("mcp", {}), f"{config_path} [mcp]"))


def _mcp(table: object, where: str) -> McpTable:
    """The seed's skills and servers, each overridden by the project's [mcp.skills] and
    [mcp.servers.NAME] entries; every skill must name servers that exist."""
    from cfn.ids import validate_id

    def fail(message: str) -> InvalidInput:
        return InvalidInput(f"{where}: {message}")

    if not isinstance(table, dict) or set(table) - {"skills", "servers"}:
        raise fail("holds only [mcp.skills] (skill = [server names]) and "
                   "[mcp.servers.NAME] tables")
    skills, servers = dict(DEFAULT_MCP_SKILLS), dict(DEFAULT_MCP_SERVERS)
    for name, entry in _table(table.get("skills", {}), "mcp.skills", fail).items():
        validate_id(name, "MCP skill")
        if not isinstance(entry, list) or not all(isinstance(s, str) for s in entry):
            raise fail(f"skill {name} must list server names, e.g. {name} = [\"playwright\"]")
        skills[name] = tuple(entry)
    for name, entry in _table(table.get("servers", {}), "mcp.servers", fail).items():
        if not _MCP_SERVER_NAME.fullmatch(name):
            raise fail(f"server name {name!r}: use up to 64 letters, digits, '_' or '-'")
        if name == OWN_MCP_SERVER:
            raise fail(f"server {name} is cfn's own; name yours otherwise")
        servers[name] = _mcp_server(name, entry, fail)
    variables: dict[str, str] = {}
    for name in servers:
        if (other := variables.setdefault(mcp_token_variable(name), name)) != name:
            raise fail(f"servers {other} and {name} would share the token variable "
                       f"{mcp_token_variable(name)}; rename one")
    for skill, names in skills.items():
        if missing := [n for n in names if n not in servers]:
            raise fail(f"skill {skill} names server(s) {', '.join(missing)} that no "
                       "[mcp.servers.NAME] table defines")
    return McpTable(skills, servers)


def _table(value: object, name: str, fail: Callable[[str], InvalidInput]) -> dict:
    if not isinstance(value, dict):
        raise fail(f"{name} must be a table")
    return value


def _mcp_server(name: str, entry: object, fail: Callable[[str], InvalidInput]) -> dict:
    """A server entry as Claude Code reads it: stdio needs a command, http and sse a url."""
    entry = _table(entry, f"mcp.servers.{name}", fail)
    kind = entry.get("type", "http" if "url" in entry else "stdio")
    if not isinstance(kind, str) or kind not in MCP_SERVER_FIELDS:
        raise fail(f"server {name}: type must be one of {', '.join(MCP_SERVER_FIELDS)}")
    if unknown := sorted(set(entry) - set(MCP_SERVER_FIELDS[kind])):
        raise fail(f"server {name} ({kind}): unknown field(s) {', '.join(unknown)}; use "
                   f"{', '.join(MCP_SERVER_FIELDS[kind])}")
    needed = "command" if kind == "stdio" else "url"
    if not isinstance(entry.get(needed), str) or not entry[needed]:
        raise fail(f"server {name} ({kind}) needs a {needed}")
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise fail(f"server {name}: args must be a list of strings (argv, no shell)")
    for field_name in ("env", "headers"):
        for key, value in _table(entry.get(field_name, {}), f"server {name}'s {field_name}",
                                 fail).items():
            _mcp_value(f"server {name}'s {field_name} {key}", field_name, key, value, fail)
    return {**entry, "type": kind}


def _mcp_value(what: str, field_name: str, key: str, value: object,
               fail: Callable[[str], InvalidInput]) -> None:
    """An env or header value: text; not one cfn sets; a secret only by reference (the
    document goes on the agent's command line)."""
    if not isinstance(value, str):
        raise fail(f"{what} must be text")
    if key.lower() == _MCP_RESERVED[field_name].lower():
        raise fail(f"{what}: cfn sets it (the agent's token for the server)")
    if _SECRET_NAME.search(key) and not _REFERENCE.search(value):
        raise fail(f"{what} looks like a secret: it would be on the agent's command line; "
                   "write ${VARIABLE} and give the agent that variable (agent_env)")


def _providers(env: Mapping[str, str], file_table: object, config_path: Path,
               sources: dict[str, str]) -> dict[str, Provider]:
    """The built-in providers, then `[providers.NAME]` tables of cfn.toml, then
    CFN_PROVIDER_<NAME>_{BASE_URL,MODEL,KEY_ENV}; records each field's source."""
    if not isinstance(file_table, dict):
        raise InvalidInput(f"{config_path}: providers must be tables, e.g. [providers.zai]")
    table = {p.name: asdict(p) for p in BUILTIN_PROVIDERS}
    for p in BUILTIN_PROVIDERS:
        for attribute in PROVIDER_FIELDS:
            sources[f"providers.{p.name}.{attribute}"] = "default"
    for name, fields in file_table.items():
        _merge_provider(table, name, fields, f"file {config_path}", sources)
    for name in list(table):
        prefix = f"CFN_PROVIDER_{name.upper()}_"
        for var in sorted(k for k in env if k.startswith(prefix)):
            _merge_provider(table, name, {var[len(prefix):].lower(): env[var]}, f"env {var}",
                            sources)
    return {name: Provider(**fields) for name, fields in table.items()}


def _merge_provider(table: dict, name: str, fields: object, where: str,
                    sources: dict[str, str]) -> None:
    from cfn.ids import validate_id

    validate_id(name, "provider")
    if not isinstance(fields, dict):
        raise InvalidInput(f"provider {name} in {where} must be a table of "
                           f"{', '.join(PROVIDER_FIELDS)}")
    unknown = sorted(set(fields) - set(PROVIDER_FIELDS))
    if unknown:
        raise InvalidInput(f"provider {name} in {where}: unknown field(s) {', '.join(unknown)}; "
                           f"use {', '.join(PROVIDER_FIELDS)} (a key never goes here: name "
                           "the variable that holds it in key_env)")
    if name not in table and not {"base_url", "model"} <= set(fields):
        raise InvalidInput(f"new provider {name} in {where} needs base_url and model")
    if fields.get("auth", AUTH_STYLES[0]) not in AUTH_STYLES:
        raise InvalidInput(f"provider {name} in {where}: auth must be one of "
                           f"{', '.join(AUTH_STYLES)}, got {fields['auth']!r}")
    entry = table.setdefault(name, {"name": name, "base_url": None, "model": "",
                                    "key_env": None, "auth": "bearer"})
    for attribute, value in fields.items():
        entry[attribute] = (str(value) or None) if attribute in ("base_url", "key_env") \
            else str(value)
        sources[f"providers.{name}.{attribute}"] = where


def check_flags(flags: Mapping[str, object]) -> None:
    """Refuse a setting given as a flag that cannot be honoured (InvalidInput)."""
    for name, value in flags.items():
        if value is not None:
            _parse(_BY_NAME[name], value, "flag --" + name.replace("_", "-"))


def _lookup(setting, flags, env, file_values, config_path) -> tuple[object, str]:
    if setting.name in flags:
        return flags[setting.name], "flag --" + setting.name.replace("_", "-")
    for var in setting.env:
        if env.get(var):
            return env[var], "env " + var
    if setting.name in file_values:
        return file_values[setting.name], f"file {config_path}"
    return setting.default, "default"


def _home(env, file_values, root: Path, config_path: Path) -> tuple[Path, str]:
    if env.get("CFN_HOME"):
        home, source = Path(env["CFN_HOME"]).resolve(), "env CFN_HOME"
    elif "home" in file_values:
        home, source = (root / str(file_values["home"])).resolve(), f"file {config_path}"
    else:
        home, source = root / STATE_DIR, "default"
    return _usable_home(home, source), source


def _usable_home(home: Path, source: str) -> Path:
    """`home`, if it is (or can become) a directory: refused before anything is written."""
    try:
        str(home).encode()
    except UnicodeEncodeError:
        raise InvalidInput(f"the state directory from {source} is not valid UTF-8; "
                           "choose a path in UTF-8") from None
    existing = next(p for p in (home, *home.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise InvalidInput(f"the state directory {home} (from {source}) cannot be made: "
                           f"{existing} is not a directory; point it at a directory")
    return home
