"""Where an agent runs. Each runtime starts one agent and can wait for, kill and clean it up,
driven by the project's asyncio supervisor (cfn.agents.supervisor):

    run = await start(runtime, RunRequest(...), pool)
    exit_code = await run.wait(seconds)     # None while it still runs
    await run.kill(); await run.cleanup()

The process runtime is asyncio-native (the kernel says when a process exits); the
container and kubernetes runtimes use blocking SDKs, so their calls run in `pool`'s threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
from collections.abc import Mapping
from concurrent.futures import Executor
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
    # sandbox modes strict and permissive (cfn.agents.spawn.SANDBOX_MODES): the workspace
    # read-only (strict), and no network but the provider relay (cfn.agents.relay)
    read_only_workspace: bool = False
    no_network: bool = False
    # the spawner's environment: where its container engine and cluster are (DOCKER_HOST,
    # KUBECONFIG), which a long-lived supervisor cannot take from its own
    host_env: Mapping[str, str] = field(default_factory=dict)


# names of variables whose values are secrets: provider keys, the agent's Redis password and
# token, and whatever an operator passes through (agent_env) under a name that says so
_SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET", "_PASSWORD")


def is_secret(name: str) -> bool:
    return name.upper().endswith(_SECRET_SUFFIXES)


def redacted(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with every secret's value replaced, for showing."""
    return {k: "<redacted>" if is_secret(k) else v for k, v in env.items()}


def open_log(path: Path, text: bool = False):
    """The agent's log, appended to; created 0600 (the operator's alone, like the whole
    state directory) whatever the umask."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a" if text else "ab")


class Run(Protocol):
    handle: str  # pid, container ID or job name

    async def wait(self, seconds: float) -> int | None: ...
    async def kill(self) -> None: ...
    async def cleanup(self) -> None: ...


class BlockingRun(Protocol):
    handle: str

    def wait(self, seconds: float) -> int | None: ...
    def kill(self) -> None: ...
    def cleanup(self) -> None: ...


@dataclass
class InThreads:
    """A runtime whose SDK blocks, driven from asyncio: each call runs in a pool thread, and
    waits are cut into short slices so a stop or a timeout is seen within seconds."""
    run: BlockingRun
    pool: Executor
    slice_s: float = 2.0

    @property
    def handle(self) -> str:
        return self.run.handle

    async def _call(self, method, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, method, *args)

    async def wait(self, seconds: float) -> int | None:
        return await self._call(self.run.wait, min(seconds, self.slice_s))

    async def kill(self) -> None:
        await self._call(self.run.kill)

    async def cleanup(self) -> None:
        await self._call(self.run.cleanup)


def _require(module: str, extra: str) -> None:
    import importlib.util

    from cfn.errors import InvalidInput

    if importlib.util.find_spec(module) is None:
        raise InvalidInput(f"the {extra} runtime needs `pip install 'cfn[{extra}]'`")


def check(runtime: str, image: str | None, sandbox: bool, host_env: Mapping[str, str],
          warn: bool = True) -> None:
    """Fail now, before anything is written or started, when the runtime cannot run an
    agent: no sandbox, no container engine, no such image, no cluster configured. `warn`:
    say here that process agents run unsandboxed (agent_sandbox off)."""
    if runtime == "process":
        from cfn.agents import isolation

        if not sandbox:
            if warn:
                _warn_unsandboxed()
        else:
            isolation.bwrap()
    elif runtime == "container":
        _require("docker", "container")
        from cfn.agents.runtimes.container import check_image

        check_image(image, host_env)
    elif runtime == "kubernetes":
        _require("kubernetes", "kubernetes")
        from cfn.agents.runtimes.kubernetes import load_cluster_config

        load_cluster_config(host_env)


@functools.cache  # once per process: a loop checks each of its agents, and spawns them
def _warn_unsandboxed() -> None:
    import logging

    logging.getLogger(__name__).warning(
        "cfn: process agents run unsandboxed (agent_sandbox is off): they see your "
        "files, your home directory and your other processes")


async def start(runtime: str, request: RunRequest, pool: Executor) -> Run:
    """Start the agent on `runtime` (a process at once; containers and jobs in `pool`)."""
    if runtime == "process":
        from cfn.agents.runtimes.process import start as start_process

        return start_process(request)
    if runtime == "container":
        _require("docker", "container")
        from cfn.agents.runtimes.container import start as start_blocking
    elif runtime == "kubernetes":
        _require("kubernetes", "kubernetes")
        from cfn.agents.runtimes.kubernetes import start as start_blocking
    else:
        raise ValueError(f"unknown runtime {runtime!r}")
    loop = asyncio.get_running_loop()
    return InThreads(await loop.run_in_executor(pool, start_blocking, request), pool)


def end_orphan(runtime: str, handle: str | None, environ: Mapping[str, str]) -> None:
    """End what an agent of a dead supervisor left running, found by the handle SQLite kept:
    a process group (it normally dies with its supervisor, but a sandbox killed in its first
    milliseconds can outlive it; the group's ID cannot be reused while members remain), a
    container, a kubernetes Job and its Secret. Best effort: it may be gone already."""
    if not handle:
        return
    if runtime == "process":
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.killpg(int(handle), signal.SIGKILL)
    elif runtime == "container":
        from cfn.agents.runtimes.container import remove

        remove(handle, environ)
    elif runtime == "kubernetes":
        from cfn.agents.runtimes.kubernetes import delete

        delete(handle, environ)
