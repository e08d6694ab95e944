"""The process runtime: the agent is a local subprocess in its own session.

stdin is closed (an agent waiting on stdin would hang until its timeout);
stdout and stderr go to the agent's log. By default the agent runs under bubblewrap
(cfn.agents.isolation): its workspace writable, the state directory, the home directory
and other processes out of sight. Memory and CPU limits are enforced by the container
and kubernetes runtimes, not here: this runtime enforces the timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cfn.agents import isolation
from cfn.agents.runtimes import RunRequest

KILL_GRACE_S = 5.0


@dataclass
class ProcessRun:
    process: subprocess.Popen

    @property
    def handle(self) -> str:
        return str(self.process.pid)

    def wait(self, seconds: float) -> int | None:
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGTERM the agent's process group, SIGKILL it after a grace period."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            if self.wait(KILL_GRACE_S) is not None:
                return

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.kill()


def start(request: RunRequest) -> ProcessRun:
    argv = request.argv
    if request.sandbox:
        argv = isolation.sandboxed(
            argv, workspace=request.workspace, home=request.env.get("HOME") or "/home/agent",
            hidden=map(Path, request.hidden), mounts=request.mounts,
            readable=isolation.python_paths(), ro_mounts=request.ro_mounts)
    request.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(request.log_path, "ab") as log:
        process = subprocess.Popen(
            argv, cwd=request.workspace, env=request.env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ProcessRun(process)
