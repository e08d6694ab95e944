"""The compose side of worktrees: what the project publishes, the override, the env file,
and running the stack with whichever compose tool is installed."""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

from cfn.errors import InvalidInput, NegativeOutcome

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def load_yaml(text: str):
    """Parse compose YAML, keeping its !override / !reset tags as plain values."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def untagged(loader, node):
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        return loader.construct_scalar(node) or None

    for tag in ("!override", "!reset"):
        Loader.add_constructor(tag, untagged)
    return yaml.load(text, Loader=Loader)


def find_file(directory: Path) -> Path | None:
    return next((directory / n for n in COMPOSE_FILES if (directory / n).is_file()), None)


class Port(NamedTuple):
    """A port a service publishes: its container port, and what the base file binds it to."""
    target: int
    host_ip: str | None = None
    protocol: str = "tcp"

    def mapping(self, host_port: int) -> str:
        """The short-syntax entry publishing it on `host_port` (same address and protocol)."""
        ip = self.host_ip and (f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip)
        return f"{ip + ':' if ip else ''}{host_port}:{self.target}/{self.protocol}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_port(entry) -> Port:
    """Parse a compose `ports` entry, short ("[IP:]HOST:CONTAINER[/PROTO]") or long syntax."""
    if isinstance(entry, dict):
        return Port(int(entry["target"]), entry.get("host_ip"), entry.get("protocol") or "tcp")
    text, _, protocol = str(entry).partition("/")
    host_ip = None
    if text.startswith("["):  # [::1]:8080:80
        host_ip, _, text = text[1:].partition("]:")
    parts = text.split(":")
    if len(parts) == 3 and _is_ip(parts[0]):  # not "${PORT:-8080}:80"
        host_ip = parts[0]
    if "-" in parts[-1] or not parts[-1].isdigit():
        raise InvalidInput(f"compose port {entry!r} is not supported: publish single ports")
    return Port(int(parts[-1]), host_ip or None, protocol or "tcp")


def published(compose_file: Path | None) -> tuple[dict[str, list[Port]], list[str]]:
    """(service -> ports it publishes, the project's own named volumes)."""
    if compose_file is None:
        return {}, []
    import yaml

    try:
        document = load_yaml(compose_file.read_text()) or {}
        services = {name: [parse_port(p) for p in (spec or {}).get("ports") or ()]
                    for name, spec in (document.get("services") or {}).items()}
        volumes = [name for name, spec in (document.get("volumes") or {}).items()
                   if not (spec or {}).get("external")]  # shared on purpose: leave them be
    except (yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{compose_file} is not a compose file cfn can read: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                           ) from None
    return {k: v for k, v in services.items() if v}, sorted(volumes)


def lease_names(services: dict[str, list[Port]]) -> dict[str, list[tuple[str, Port]]]:
    """service -> (lease name, port) per published port: a lease is named after its service,
    or service-PORT when the service publishes several."""
    return {service: [(service if len(ports) == 1 else f"{service}-{p.target}", p)
                      for p in ports]
            for service, ports in sorted(services.items())}


def render_override(branch: str, project: str, services: dict[str, list[Port]],
                    leases: dict[str, int], volumes: list[str]) -> str:
    from importlib.resources import files  # ~8 ms: only `up` renders

    from jinja2 import Template

    template = Template((Path(str(files("cfn._worktree"))) / "compose.override.yml.j2")
                        .read_text(), keep_trailing_newline=True)
    mapped = {service: [port.mapping(leases[name]) for name, port in named]
              for service, named in lease_names(services).items()}
    return template.render(branch=branch, project=project, services=mapped, volumes=volumes)


def env_vars(project: str, ports: dict[str, int]) -> dict[str, str]:
    """The env file's variables. Only names and numbers: not the branch, whose characters
    (`${`, quotes) no env-file syntax keeps literal in both docker compose and podman-compose.
    No REDIS_URL: whether one may be given out depends on the stack running (`redis_port`)."""
    env = {"COMPOSE_PROJECT_NAME": project}
    for service, port in ports.items():
        env[f"CFN_{re.sub(r'[^A-Z0-9]', '_', service.upper())}_PORT"] = str(port)
    return env


def redis_port(ports: dict[str, int]) -> int | None:
    """The leased port of the compose file's `redis` service (its 6379 if it publishes
    several), or None when the file defines no such service."""
    return ports.get("redis") or ports.get("redis-6379")


def env_file_text(env: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in env.items())


def exports(env: dict[str, str]) -> str:
    """For `eval "$(cfn worktree env BRANCH)"`."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def tool(configured: str | None = None) -> list[str]:
    """The compose command: the configured one (the `compose` setting, CFN_COMPOSE), else
    docker compose, podman-compose or docker-compose, whichever is found."""
    if configured:
        return shlex.split(configured)
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    for name in ("podman-compose", "docker-compose"):
        if shutil.which(name):
            return [name]
    raise NegativeOutcome("no compose tool found: install Docker Compose or podman-compose "
                          "(pip install podman-compose), or pass --no-start")


def run(command: list[str], cwd: Path, doing: str) -> None:
    """Run the compose tool with its output (stdout too: ours carries data only) going to our
    stderr as it comes, so the user sees its progress; on failure say what was being done."""
    done = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=2)
    if done.returncode != 0:
        raise NegativeOutcome(f"{doing} failed: `{shlex.join(command)}` exited "
                              f"{done.returncode} (its output above says why)")
