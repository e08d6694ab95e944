"""Configuration, resolved in one place: flag > environment > project file > default.

The project file is `cfn.toml` at the project root: flat `name = value` pairs
using the setting names below. `cfn config` prints each value and its source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cfn.errors import InvalidInput

CONFIG_FILE = "cfn.toml"
STATE_DIR = ".cfn"


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError("must be from 0 to 1")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


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
            "Redis to coordinate through; unset: the project's embedded redis-server"),
    Setting("redis_username", ("REDIS_USERNAME",), None, "Redis ACL user name"),
    Setting("redis_password", ("REDIS_PASSWORD",), None, "Redis password", secret=True),
    Setting("redis_fallback_1", ("REDIS_FALLBACK_1",), None,
            "second Redis, used when the primary is unreachable"),
    Setting("connect_timeout", ("CFN_CONNECT_TIMEOUT",), 10.0,
            "seconds to wait for a Redis connection", _positive_float),
    Setting("retries", ("CFN_RETRIES",), 3,
            "retries of a Redis command after a connection error", _non_negative_int),
    Setting("key_ttl", ("CFN_KEY_TTL",), 7 * 24 * 3600,
            "seconds signals, results and completions live after their last write",
            _positive_int),
    Setting("max_payload", ("CFN_MAX_PAYLOAD",), 1024 * 1024,
            "largest value, payload or result accepted, in bytes", _positive_int),
    Setting("agent_image", ("CFN_AGENT_IMAGE",), "localhost/cfn-agent:latest",
            "image the container runtime runs agents in"),
    Setting("agent_acl", ("CFN_AGENT_ACL",), "on",
            "give each agent a Redis ACL user limited to its task's keys (on/off)"),
    Setting("token_secret", ("CFN_TOKEN_SECRET",), None,
            "agent token signing secret; unset: generated once into the state directory",
            secret=True),
    Setting("skill_approve_risk", ("CFN_SKILL_APPROVE_RISK",), 0.30,
            "skills auto-approve at this risk or lower (with enough coverage)", _fraction),
    Setting("skill_approve_coverage", ("CFN_SKILL_APPROVE_COVERAGE",), 0.95,
            "skills auto-approve only at this test coverage or higher", _fraction),
    Setting("skill_escalate_risk", ("CFN_SKILL_ESCALATE_RISK",), 0.60,
            "skills above this risk are escalated", _fraction),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Resolved settings. `sources[name]` says where each value came from."""

    root: Path
    home: Path
    values: Mapping[str, object]
    sources: Mapping[str, str]

    def __getattr__(self, name: str) -> object:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def shown(self, name: str) -> object:
        """The value as it may be displayed: secrets and URL passwords masked."""
        value = self.values[name]
        if value is None:
            return None
        setting = _BY_NAME.get(name)
        if setting and setting.secret:
            return "****"
        if name.endswith("url") or name.startswith("redis_fallback"):
            return mask_url(str(value))
        return value


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
    unknown = sorted(set(data) - set(_BY_NAME) - {"home"})
    if unknown:
        raise InvalidInput(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(_BY_NAME))
        )
    return data


def _parse(setting: Setting, raw: object, source: str) -> object:
    if setting.parse is str:
        return str(raw)
    try:
        return setting.parse(str(raw))
    except ValueError as exc:
        raise InvalidInput(f"{setting.name} from {source} is {raw!r}: {exc}") from None


def resolve(
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve every setting: explicit flag > environment variable > cfn.toml > default."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
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
    return Config(root=root, home=home, values=values, sources=sources)


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
        return Path(env["CFN_HOME"]).resolve(), "env CFN_HOME"
    if "home" in file_values:
        return (root / str(file_values["home"])).resolve(), f"file {config_path}"
    return root / STATE_DIR, "default"
