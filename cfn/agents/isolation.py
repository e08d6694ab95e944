"""What of the caller an agent may see. Agents are untrusted (a prompt can be injected into
any of them): a process agent inherits only an allowlist of the caller's environment, never
its cfn, Redis, cloud or provider credentials (docs/security.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cfn.errors import InvalidInput

# names that carry no credentials and that programs need to run, find CAs and reach proxies
PASSED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TZ", "LANG", "LANGUAGE",
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


# what a sandboxed process agent sees of the machine, read-only: programs, libraries, config
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/etc", "/opt")


# the skills an agent may run (spawning and the loop are the trusted side's)
AGENT_SKILLS = ("redis-coordination",)
CONTAINER_HOME = "/home/agent"  # the agent image's non-root user


def shipped_skills() -> Path:
    from importlib.resources import files

    return Path(str(files("cfn._skills")))


def skill_rules(skills_dir: str) -> list[str]:
    """Claude Code permission rules that allow exactly the agent skills' scripts, by the path
    they are installed at and by the ~ path their SKILL.md shows."""
    rules = []
    for skill in AGENT_SKILLS:
        for script in sorted((shipped_skills() / skill).glob("*.sh")):
            for base in dict.fromkeys((skills_dir, "~/.claude/skills")):
                rules.append(f"Bash({base}/{skill}/{script.name}:*)")
    return rules


def bwrap() -> str:
    """bwrap's path; InvalidInput saying how to get it when it is missing."""
    import shutil

    found = shutil.which("bwrap")
    if found is None:
        raise InvalidInput("bubblewrap (bwrap) sandboxes process agents and is not installed: "
                           "apt-get install bubblewrap, or set agent_sandbox = off (agents "
                           "then see your files, your home and your other processes)")
    return found


# what of a writable workspace stays read-only: the trusted side's configuration (providers
# and their URLs, agent profiles, worker definitions with their sandbox modes and tools) and
# git's hooks and config, which run commands when the operator next uses git; an agent
# that could rewrite them would widen its own (or the next agent's) rights
CONTROL_PATHS = ("cfn.toml", "agents", "workers", ".git/hooks", ".git/config")


def control_paths(workspace: Path) -> list[Path]:
    """The workspace's control paths that exist (a missing one cannot be covered without
    creating it in the operator's tree: docs/security.md)."""
    return [workspace / p for p in CONTROL_PATHS if (workspace / p).exists()]


def sandboxed(argv: list[str], *, workspace: Path, home: str, hidden: Iterable[Path],
              mounts: Mapping[str, str], readable: Iterable[Path],
              ro_mounts: Mapping[str, str] | None = None, writable_workspace: bool = True,
              network: bool = True) -> list[str]:
    """`argv` run under bubblewrap: the system read-only, the workspace writable (unless
    not `writable_workspace`), a fresh /tmp and home, `hidden` paths (the state directory)
    covered, `mounts` (host -> inside, e.g. the Redis socket) bound, and its own PID
    namespace, so no other process (no supervisor, no other agent) and no /proc/PID/environ
    of theirs is visible. The network is shared (agents reach their provider and Redis)
    unless not `network`: then the sandbox has its own loopback and nothing else."""
    # no capabilities: even an agent of an operator running as root cannot unmount what
    # covers the state directory, or mount anything
    command = [bwrap(), "--cap-drop", "ALL", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
               "--die-with-parent", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
               "--tmpfs", "/run", "--ro-bind-try", "/run/systemd/resolve",
               "/run/systemd/resolve"]  # where resolv.conf points on systemd-resolved hosts
    if not network:
        command.append("--unshare-net")
    for path in SYSTEM_PATHS:
        command += ["--ro-bind-try", path, path]
    command += ["--tmpfs", home]  # before the binds: a workspace may live in the home
    for path in readable:
        if not Path(home).is_relative_to(path):  # never the whole home again
            command += ["--ro-bind-try", str(path), str(path)]
    command += ["--bind" if writable_workspace else "--ro-bind", str(workspace), str(workspace)]
    for path in control_paths(workspace) if writable_workspace else ():
        command += ["--ro-bind", str(path), str(path)]
    for path in hidden:
        command += ["--tmpfs", str(path)]
    for host, inside in mounts.items():
        command += ["--bind", host, inside]
    for host, inside in (ro_mounts or {}).items():
        command += ["--ro-bind", host, inside]
    return [*command, "--chdir", str(workspace), "--", *argv]


def python_paths() -> list[Path]:
    """Where this Python and cfn's packages live, so that agents can run `cfn` and the
    skills; only the packages, never the tree around them (a checkout holds a .cfn/)."""
    import sys
    from importlib.resources import files

    packages = ("cfn", "cfn._agents", "cfn._skills", "cfn._migrations", "cfn._worktree")
    return sorted({Path(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)} |
                  {Path(str(files(package))).resolve() for package in packages})
