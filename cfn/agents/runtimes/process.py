"""The process runtime: the agent is a local subprocess in its own session.

stdin is closed (an agent waiting on stdin would hang until its timeout);
stdout and stderr go straight to the agent's log file. By default the agent runs under
bubblewrap (cfn.agents.isolation): its workspace writable, the state directory, the home
directory and other processes out of sight. Memory and CPU limits are enforced by the
container and kubernetes runtimes, not here: this runtime enforces the timeout.

The supervisor learns of the exit from a pidfd (no thread, no polling), and the agent dies
with its supervisor: bubblewrap's --die-with-parent, or setpriv's parent-death signal for
an unsandboxed agent, so a killed supervisor leaves no orphan behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cfn.agents import isolation
from cfn.agents.runtimes import RunRequest, open_log

KILL_GRACE_S = 5.0


@dataclass
class ProcessRun:
    process: subprocess.Popen
    pidfd: int = field(init=False)

    def __post_init__(self) -> None:
        try:
            self.pidfd = os.pidfd_open(self.process.pid)
        except OSError:  # out of descriptors: an agent nobody watches must not run
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise

    @property
    def handle(self) -> str:
        return str(self.process.pid)

    async def wait(self, seconds: float) -> int | None:
        """The exit code, or None if the agent still runs after `seconds`."""
        if self.process.returncode is not None:
            return self.process.returncode
        loop = asyncio.get_running_loop()
        exited = loop.create_future()
        loop.add_reader(self.pidfd, lambda: exited.done() or exited.set_result(None))
        try:
            await asyncio.wait_for(exited, max(seconds, 0))
        except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
            return None
        finally:
            loop.remove_reader(self.pidfd)
        return self._reap()

    def _reap(self) -> int:
        """The exit code of the agent, which has ended: whatever it left in its process group
        (a sandbox's init, background jobs) is killed first, while its unreaped exit keeps
        the group's ID from being reused."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()

    async def kill(self) -> None:
        """SIGTERM the agent's process group, SIGKILL it after a grace period."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            if await self.wait(KILL_GRACE_S) is not None:
                return

    async def cleanup(self) -> None:
        if self.process.returncode is None:
            await self.kill()
        with contextlib.suppress(OSError):
            os.close(self.pidfd)


def start(request: RunRequest) -> ProcessRun:
    argv = request.argv
    if request.sandbox:
        argv = isolation.sandboxed(
            argv, workspace=request.workspace, home=request.env.get("HOME") or "/home/agent",
            hidden=map(Path, request.hidden), mounts=request.mounts,
            readable=isolation.python_paths(), ro_mounts=request.ro_mounts,
            writable_workspace=not request.read_only_workspace, network=not request.no_network)
    elif setpriv := shutil.which("setpriv"):
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    with open_log(request.log_path) as log:
        process = subprocess.Popen(
            argv, cwd=request.workspace, env=request.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ProcessRun(process)
