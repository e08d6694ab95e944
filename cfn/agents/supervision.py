"""Talking to the project's supervisor (cfn.agents.supervisor): where it listens, starting it
on demand, handing it an agent, asking it to stop one.

It listens on a unix socket in the state directory's `supervisor/` (0700: the operator's
alone, since a spec carries the agent's credentials). The first spawn starts it; concurrent
starters race for its lock and the loser leaves at once. An idle supervisor closes its
socket before it leaves, so a spawner that finds no one there starts the next one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from cfn.config import ensure_home
from cfn.embedded import accepting, short_socket_path
from cfn.errors import BackendUnavailable

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
START_DEADLINE_S = 15.0
ANSWER_TIMEOUT_S = 60.0
# what the supervisor inherits of the spawner's environment besides the agents' allowlist
# (each spec carries its spawner's environment: keys and engines are per spawn)
_PASSED = ("CFN_SUPERVISOR_IDLE_S", "CFN_DEBUG")


def state_dir(home: Path) -> Path:
    return home / "supervisor"


def socket_path(home: Path) -> Path:
    return short_socket_path(state_dir(home) / "supervisor.sock", home)


def log_path(home: Path) -> Path:
    return state_dir(home) / "supervisor.log"


def hold(home: Path) -> IO | None:
    """The supervisor's lock, held while it accepts agents; None if another holds it."""
    return hold_lock(state_dir(home) / "lock")


def hold_lock(path: Path) -> IO | None:
    """An exclusive lock on `path` (created 0600), held until the file is closed or the
    process ends (however it ends: the kernel lets go); None if another holds it."""
    lock = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def alive(pid: int) -> bool:
    """True while `pid` is a running supervisor (not a zombie, not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"cfn.agents.supervisor" in command


def submit(home: Path, spec: dict) -> int:
    """Hand an agent to the project's supervisor, starting one if none runs; its pid."""
    return _ask(home, {"op": "run", "spec": spec}, start=True)["pid"]


def stop(home: Path, task_id: str, agent_id: str) -> bool:
    """Ask the supervisor to stop an agent (it still records it); False if it does not run
    the agent."""
    try:
        return _ask(home, {"op": "stop", "task_id": task_id, "agent_id": agent_id})["ok"]
    except BackendUnavailable:
        return False


def _ask(home: Path, message: dict, start: bool = False) -> dict:
    for _attempt in range(3):
        try:
            answer = _exchange(socket_path(home), message)
        except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, EOFError):
            # nobody listens, or an idle supervisor closed as we came (it ran nothing)
            if not start:
                break
            _start(home)
            continue
        except TimeoutError:
            raise BackendUnavailable(f"the supervisor did not answer within "
                                     f"{ANSWER_TIMEOUT_S:g}s; see {log_path(home)}") from None
        if answer.get("ok") is False and message["op"] == "run":
            raise BackendUnavailable(f"the supervisor refused the agent: {answer['error']}")
        return answer
    raise BackendUnavailable(f"no supervisor answers for this project; see {log_path(home)}")


def _exchange(path: Path, message: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(ANSWER_TIMEOUT_S)
        conn.connect(str(path))
        _check_peer(conn, path)  # a spec carries credentials: only our own supervisor gets it
        conn.sendall(json.dumps(message).encode() + b"\n")
        with conn.makefile("rb") as replies:
            line = replies.readline()
    if not line:
        raise EOFError
    return json.loads(line)


def _check_peer(conn: socket.socket, path: Path) -> None:
    import struct

    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    if uid != os.getuid():
        raise BackendUnavailable(f"{path} is served by another user (uid {uid}); remove it")


def _start(home: Path) -> None:
    """Start a supervisor and wait until one (it, or a rival's) accepts."""
    from cfn.agents.isolation import inherited

    directory = state_dir(ensure_home(home))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    socket_path(home).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_path(home), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "cfn.agents.supervisor", "--home", str(home)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, cwd=directory,
            env=inherited(os.environ, _PASSED), start_new_session=True)  # outlives us
    deadline = time.monotonic() + START_DEADLINE_S
    while not accepting(socket_path(home)):
        if time.monotonic() > deadline:
            raise BackendUnavailable(f"the supervisor did not start; see {log_path(home)}")
        time.sleep(0.01)
