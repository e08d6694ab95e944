"""The compose side of worktrees: what the project publishes, the override, the env file,
and running the stack with whichever compose tool is installed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

from cfn.errors import InvalidInput, NegativeOutcome

COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


class _Loader:
    """A YAML loader that keeps compose's !override / !reset tags as plain values."""

    @staticmethod
    def load(text: str):
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        for tag in ("!override", "!reset"):
            Loader.add_constructor(tag, lambda loader, node: loader.construct_sequence(node)
                                   if isinstance(node, yaml.SequenceNode) else
                                   loader.construct_mapping(node)
                                   if isinstance(node, yaml.MappingNode) else None)
        return yaml.load(text, Loader=Loader)


def load_yaml(text: str):
    return _Loader.load(text)


def find_file(directory: Path) -> Path | None:
    return next((directory / n for n in COMPOSE_FILES if (directory / n).is_file()), None)


def _target(entry) -> int:
    """The container port of a compose `ports` entry (short or long syntax)."""
    if isinstance(entry, dict):
        return int(entry["target"])
    text = str(entry).split("/", 1)[0]
    container = text.rsplit(":", 1)[-1]
    if "-" in container:
        raise InvalidInput(f"port range {entry!r} is not supported; publish single ports")
    return int(container)


def published(compose_file: Path | None) -> tuple[dict[str, list[int]], list[str]]:
    """(service -> container ports it publishes, top-level named volumes)."""
    if compose_file is None:
        return {}, []
    document = load_yaml(compose_file.read_text()) or {}
    services = {name: [_target(p) for p in (spec or {}).get("ports") or ()]
                for name, spec in (document.get("services") or {}).items()}
    return {k: v for k, v in services.items() if v}, sorted(document.get("volumes") or {})


def lease_names(services: dict[str, list[int]]) -> list[str]:
    """A lease per published port: the service's name, or name-PORT when it has several."""
    names = []
    for service, targets in sorted(services.items()):
        names += [service] if len(targets) == 1 else [f"{service}-{t}" for t in targets]
    return names


def render_override(branch: str, project: str, services: dict[str, list[int]],
                    ports: dict[str, int], volumes: list[str]) -> str:
    from jinja2 import Template

    template = Template((Path(str(files("cfn._worktree"))) / "compose.override.yml.j2")
                        .read_text(), keep_trailing_newline=True)
    mapped = {}
    for service, targets in sorted(services.items()):
        keys = [service] if len(targets) == 1 else [f"{service}-{t}" for t in targets]
        mapped[service] = [{"host": ports[k], "target": t} for k, t in zip(keys, targets,
                                                                           strict=True)]
    return template.render(branch=branch, project=project, services=mapped, volumes=volumes)


def env_vars(branch: str, project: str, ports: dict[str, int]) -> dict[str, str]:
    env = {"COMPOSE_PROJECT_NAME": project, "WORKTREE_BRANCH": branch}
    for service, port in ports.items():
        env[f"CFN_{service.upper().replace('-', '_')}_PORT"] = str(port)
    if "redis" in ports:
        env["REDIS_URL"] = f"redis://127.0.0.1:{ports['redis']}/0"
    return env


def env_file_text(env: dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in env.items())


def exports(env: dict[str, str]) -> str:
    """For `eval "$(cfn worktree env BRANCH)"`."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def tool() -> list[str]:
    """The compose command: CFN_COMPOSE, else docker compose, podman-compose, docker-compose."""
    if os.environ.get("CFN_COMPOSE"):
        return shlex.split(os.environ["CFN_COMPOSE"])
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    for name in ("podman-compose", "docker-compose"):
        if shutil.which(name):
            return [name]
    raise NegativeOutcome("no compose tool found: install Docker Compose or podman-compose "
                          "(pip install podman-compose), or pass --no-start")


def run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise NegativeOutcome(f"{' '.join(command[:2])} failed: "
                              f"{(done.stderr or done.stdout).strip()[-800:]}")
