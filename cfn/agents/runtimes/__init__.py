"""Where an agent runs. Each runtime starts one agent and can wait for, kill and clean it up.

    run = runtime_for(name).start(RunRequest(...))
    exit_code = run.wait(seconds)     # None while it still runs
    run.kill(); run.cleanup()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

RUNTIMES = ("process", "container", "kubernetes")


@dataclass(frozen=True)
class RunRequest:
    name: str  # unique: cfn-<task>-<agent>-<run>
    argv: list[str]
    env: dict[str, str]  # the agent's whole environment: secrets travel here, never in argv
    workspace: Path
    log_path: Path
    memory: str | None = None
    cpus: float | None = None
    image: str | None = None
    network: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, str] = field(default_factory=dict)  # host path -> container path
    ro_mounts: dict[str, str] = field(default_factory=dict)  # the same, read-only
    deadline_s: float | None = None  # the platform's own limit (kubernetes activeDeadline)
    sandbox: bool = False  # process runtime: run under bubblewrap (cfn.agents.isolation)
    hidden: tuple[str, ...] = ()  # host paths the agent must not see (the state directory)


class Run(Protocol):
    handle: str  # pid, container ID or job name

    def wait(self, seconds: float) -> int | None: ...
    def kill(self) -> None: ...
    def cleanup(self) -> None: ...


def _require(module: str, extra: str) -> None:
    import importlib.util

    from cfn.errors import InvalidInput

    if importlib.util.find_spec(module) is None:
        raise InvalidInput(f"the {extra} runtime needs `pip install 'cfn[{extra}]'`")


def check(runtime: str, image: str | None, sandbox: bool) -> None:
    """Fail now, before anything is written or started, when the runtime cannot run an
    agent: no sandbox, no container engine, no such image, no cluster configured."""
    if runtime == "process":
        import logging

        from cfn.agents import isolation

        if not sandbox:
            logging.getLogger(__name__).warning(
                "cfn: process agents run unsandboxed (agent_sandbox is off): they see your "
                "files, your home directory and your other processes")
        else:
            isolation.bwrap()
    elif runtime == "container":
        _require("docker", "container")
        from cfn.agents.runtimes.container import check_image

        check_image(image)
    elif runtime == "kubernetes":
        _require("kubernetes", "kubernetes")
        from cfn.agents.runtimes.kubernetes import load_cluster_config

        load_cluster_config()


def start(runtime: str, request: RunRequest) -> Run:
    """Start the agent on `runtime`."""
    if runtime == "process":
        from cfn.agents.runtimes.process import start as start_process

        return start_process(request)
    if runtime == "container":
        _require("docker", "container")
        from cfn.agents.runtimes.container import start as start_container

        return start_container(request)
    if runtime == "kubernetes":
        _require("kubernetes", "kubernetes")
        from cfn.agents.runtimes.kubernetes import start as start_job

        return start_job(request)
    raise ValueError(f"unknown runtime {runtime!r}")
