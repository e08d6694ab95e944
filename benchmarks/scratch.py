"""What the benchmarks of cfn's servers share: a throwaway redis-server on a unix socket
and an empty project whose cfn uses it."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from cfn import embedded


def redis_and_project(root: Path) -> tuple[subprocess.Popen, Path, Path, dict[str, str]]:
    """A redis-server (no persistence) in `root`, and a project beside it: (the server, its
    socket, the project, the environment cfn runs with there)."""
    sock = root / "redis.sock"
    server = subprocess.Popen([embedded.server_binary(), "--port", "0", "--unixsocket",
                               str(sock), "--save", "", "--appendonly", "no"],
                              stdout=subprocess.DEVNULL)
    while not embedded.accepting(sock):
        time.sleep(0.01)
    project = root / "project"
    (project / ".git").mkdir(parents=True)
    env = {**os.environ, "REDIS_URL": f"unix://{sock}", "CFN_HOME": str(project / ".cfn")}
    return server, sock, project, env
