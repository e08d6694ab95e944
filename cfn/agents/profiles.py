"""Agent profiles: one TOML file per agent type.

The profiles shipped with cfn live in the repository's agents/ directory; a
project's own agents/*.toml override them by id. Loading validates every
field and names the file in any error.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from cfn.config import read_toml
from cfn.errors import InvalidInput
from cfn.ids import validate_id

KINDS = ("claude", "scripted")
ROLES = ("implementer", "validator", "product-owner", "any")
# what a command template may refer to; filled in per spawn, one argv element at a time
PLACEHOLDERS = {"prompt", "instructions", "model", "workspace", "task_id", "agent_id",
                "allowed_tools"}

# {allowed_tools}: the profile's `tools` and the coordination skills' scripts, nothing broader.
# stream-json writes each event as it happens, so the agent's log (`cfn agents logs -f`)
# shows its work live; it ends with the result event the report is read from. -p needs
# --verbose for it.
CLAUDE_COMMAND = (
    "claude", "-p", "--output-format", "stream-json", "--verbose", "--model", "{model}",
    "--allowedTools", "{allowed_tools}", "--append-system-prompt", "{instructions}", "{prompt}",
)
_FIELDS = {"id", "name", "role", "kind", "provider", "model", "temperature", "max_tokens",
           "timeout", "memory", "cpus", "instructions", "command", "fallback", "max_retries",
           "permission_mode", "tools", "skills"}


@dataclass(frozen=True)
class Profile:
    id: str
    name: str
    role: str = "any"
    kind: str = "claude"
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = 600.0
    memory: str = "1g"
    cpus: float = 1.0
    instructions: str = ""
    command: tuple[str, ...] = ()
    fallback: tuple[str, ...] = ()
    max_retries: int = 2  # the agent CLI's own retries before cfn moves to the next provider
    permission_mode: str | None = None
    # Claude Code tools the agent may use besides the coordination skills, e.g. "Edit"
    tools: tuple[str, ...] = ("Read", "Glob", "Grep")
    # the seed's agent skills, e.g. "browser-automation": which MCP servers the agent gets
    # besides cfn's own ([mcp.skills] of cfn.toml maps them; cfn.mcp.agents)
    skills: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def to_data(self) -> dict:
        """The profile as its TOML document would hold it (for handing to a supervisor)."""
        from dataclasses import asdict

        data = {k: v for k, v in asdict(self).items() if v is not None and k != "source"}
        return {**data, "command": list(self.command), "fallback": list(self.fallback),
                "tools": list(self.tools), "skills": list(self.skills)}

    @property
    def runs_claude_code(self) -> bool:
        """A Claude profile on cfn's own claude command line (not a command of its own)."""
        return self.kind == "claude" and not self.command

    def argv(self, mcp_config: str = "", **values: str) -> list[str]:
        """The command with its placeholders filled in (no shell involved); Claude's own gets
        the MCP servers of `mcp_config` (JSON), and only those."""
        if not self.runs_claude_code:
            return [part.format_map(values) for part in self.command]
        *flags, prompt = (part.format_map(values) for part in CLAUDE_COMMAND)
        if self.permission_mode:
            flags += ["--permission-mode", self.permission_mode]
        if mcp_config:  # --mcp-config takes several values: the next flag ends them
            flags += ["--mcp-config", mcp_config, "--strict-mcp-config"]
        return [*flags, prompt]


def shipped_dir() -> Path:
    return Path(str(files("cfn._agents")))


def _placeholders(part: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(part) if name is not None}


def parse(data: dict, source: str) -> Profile:
    """A validated Profile from a TOML document; InvalidInput naming `source` if not."""
    def fail(message: str) -> InvalidInput:
        return InvalidInput(f"agent profile {source}: {message}")

    unknown = set(data) - _FIELDS
    if unknown:
        raise fail(f"unknown field(s) {', '.join(sorted(unknown))}; known: "
                   f"{', '.join(sorted(_FIELDS))}")
    for required in ("id", "name"):
        if not isinstance(data.get(required), str):
            raise fail(f"'{required}' is required (text)")
    try:
        validate_id(data["id"], "profile id")
    except InvalidInput as exc:
        raise fail(str(exc)) from None
    if data.get("kind", "claude") not in KINDS:
        raise fail(f"kind must be one of {', '.join(KINDS)}")
    if data.get("role", "any") not in ROLES:
        raise fail(f"role must be one of {', '.join(ROLES)}")
    for name, kind in (("temperature", (int, float)), ("timeout", (int, float)),
                       ("cpus", (int, float)), ("max_tokens", int), ("max_retries", int)):
        if name in data and (not isinstance(data[name], kind) or data[name] < 0):
            raise fail(f"{name} must be a non-negative number")
    command = data.get("command", [])
    if not isinstance(command, list) or not all(isinstance(p, str) for p in command):
        raise fail("command must be a list of strings (argv, no shell)")
    tools = data.get("tools", list(Profile.tools))
    if not isinstance(tools, list) or not all(isinstance(t, str) and t for t in tools):
        raise fail('tools must be a list of Claude Code tool rules, e.g. ["Read", "Edit"]')
    skills = data.get("skills", [])
    if not isinstance(skills, list) or not all(isinstance(k, str) and k for k in skills):
        raise fail('skills must be a list of skill names, e.g. ["browser-automation"]')
    bad = set().union(*map(_placeholders, command)) - PLACEHOLDERS if command else set()
    if bad:
        raise fail(f"command uses unknown placeholder(s) {', '.join(sorted(bad))}; "
                   f"available: {', '.join(sorted(PLACEHOLDERS))}")
    return Profile(
        **{k: v for k, v in data.items() if k not in ("command", "fallback", "tools", "skills")},
        command=tuple(command), fallback=tuple(data.get("fallback", ())), tools=tuple(tools),
        skills=tuple(skills), source=source,
    )


def _read(path: Path) -> Profile:
    profile = parse(read_toml(path, "agent profile"), str(path))
    if profile.id != path.stem:
        raise InvalidInput(f"agent profile {path}: id {profile.id!r} must match the file name")
    return profile


def load_all(project_root: Path | None = None) -> dict[str, Profile]:
    """Shipped profiles, overridden by the project's agents/*.toml."""
    found = {p.id: p for p in map(_read, sorted(shipped_dir().glob("*.toml")))}
    if project_root is not None and (project_root / "agents").is_dir():
        own = sorted((project_root / "agents").glob("*.toml"))
        found.update({p.id: p for p in map(_read, own)})
    return found


def get(name: str, project_root: Path | None = None) -> Profile:
    profiles = load_all(project_root)
    if name not in profiles:
        raise InvalidInput(f"no agent profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]


def profile_for_agent(agent_id: str, explicit: str | None, project_root: Path | None) -> Profile:
    """The explicit profile, else the agent ID itself or with a trailing -N removed (coder-2)."""
    if explicit:
        return get(explicit, project_root)
    profiles = load_all(project_root)
    base = agent_id.rsplit("-", 1)[0] if agent_id.rsplit("-", 1)[-1].isdigit() else agent_id
    for candidate in (agent_id, base):
        if candidate in profiles:
            return profiles[candidate]
    raise InvalidInput(f"no agent profile for {agent_id!r}: name one with --profile "
                       f"({', '.join(sorted(profiles))})")
