"""Sessions: a container that lives for a while, into which tasks run in turn.

The container's own command is `sleep TIMEOUT`, and it is started with
auto-remove: when the session times out the container ends and disappears by
itself, so a forgotten session cannot outlive its timeout. The workspace is
a directory of the host, or a repository cloned (with git, on the host) into
the state directory. Tasks run with `exec`, one at a time per session (a file
lock), and their output streams back as it is produced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfn import validate
from cfn.agents.runtimes.container import client
from cfn.config import mask_credentials
from cfn.errors import InvalidInput, NegativeOutcome
from cfn.ids import validate_id

if TYPE_CHECKING:
    from cfn.config import Config

LABEL = "cfn.session"


@dataclass(frozen=True)
class Session:
    id: str
    container_id: str
    workspace: str
    expires_at: float
    status: str

    def to_dict(self) -> dict:
        return asdict(self)


def _describe(container) -> Session:
    labels = container.labels
    return Session(labels[LABEL], container.id, labels.get("cfn.workspace", ""),
                   float(labels.get("cfn.expires", 0)), container.status)


def _clone(repo: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["git", "clone", "--quiet", "--", repo, str(target)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise InvalidInput(mask_credentials(f"git could not clone {repo}: "
                                            f"{done.stderr.strip()}"))
    _writable_by_anyone(target)  # the image's user is not ours; the clone sits in our 0700 home
    return target


def scratch_workspace(home: Path) -> Path:
    """An empty workspace of its own for a session, writable by the image's user."""
    base = home / "sessions"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="workspace-", dir=base))
    _writable_by_anyone(path)
    return path


def _writable_by_anyone(root: Path) -> None:
    for directory, _dirs, names in os.walk(root):
        os.chmod(directory, 0o777)
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o666)


def start(home: Path, *, image: str, timeout: float, workspace: Path | None = None,
          repo: str | None = None, session_id: str | None = None, memory: str | None = None,
          cpus: float | None = None, network: str | None = None) -> Session:
    """Start a session container; it removes itself after `timeout` seconds."""
    session_id = validate_id(session_id or f"s-{secrets.token_hex(4)}", "session ID")
    validate.positive_seconds(timeout, "timeout")
    if workspace and repo:
        raise InvalidInput("give --workspace or --repo, not both")
    engine = client()
    if engine.containers.list(all=True, filters={"label": f"{LABEL}={session_id}"}):
        raise InvalidInput(f"session {session_id} already exists")
    if repo:
        workspace = _clone(repo, home / "sessions" / session_id / "repo")
    workspace = (workspace or Path.cwd()).resolve()
    if not workspace.is_dir():
        raise InvalidInput(f"workspace {workspace} is not a directory")
    expires = time.time() + timeout
    container = engine.containers.run(
        image, ["/bin/sleep", str(int(timeout))], name=f"cfn-session-{session_id}".lower(),
        detach=True, auto_remove=True, working_dir="/workspace",
        volumes={str(workspace): {"bind": "/workspace", "mode": "rw"}},
        mem_limit=memory, nano_cpus=int(cpus * 1e9) if cpus else None, network=network,
        labels={LABEL: session_id, "cfn.workspace": str(workspace),
                "cfn.expires": f"{expires:.0f}"},
        restart_policy={"Name": "no"},
    )
    container.reload()
    return _describe(container)


def get(session_id: str) -> Session:
    """A running session; NegativeOutcome if there is none of that ID."""
    return _describe(_container(session_id))


def _container(session_id: str):
    label = f"{LABEL}={validate_id(session_id, 'session ID')}"
    found = client().containers.list(filters={"label": label})
    if not found:
        raise NegativeOutcome(f"no running session {session_id} (stopped, timed out or never "
                              "started); `cfn session ls` lists them")
    return found[0]


@contextlib.contextmanager
def _turn(home: Path, session_id: str) -> Iterator[None]:
    """Tasks of one session run in turn."""
    path = home / "sessions" / session_id / "exec.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def run(home: Path, session_id: str, argv: list[str],
        env: dict[str, str] | None = None) -> Iterator[bytes | int]:
    """Run a task in the session: yields output chunks as they come, then the exit code."""
    if not argv:
        raise InvalidInput("give the task's command after `--`")
    container = _container(session_id)
    with _turn(home, session_id):
        api = container.client.api
        exec_id = api.exec_create(container.id, argv, workdir="/workspace", environment=env,
                                  stdout=True, stderr=True)["Id"]
        yield from api.exec_start(exec_id, stream=True)
        yield int(api.exec_inspect(exec_id)["ExitCode"])


# what Claude Code may do in a session: its container and the workspace are its whole world
CLAUDE_TOOLS = "Read,Glob,Grep,Edit,Write"


def ask_claude(config: Config, environ: Mapping[str, str], session_id: str, task: str) -> str:
    """Claude Code, headless, on `task` in the session: its answer. The provider is routed as
    for an agent; its key reaches the container in the exec's environment, never argv, and
    the session gets no other credential."""
    from cfn import routing
    from cfn.agents.outcome import result_event

    route = routing.select(config, environ)
    resolved = routing.resolve(config.providers[route.chain[0]], environ)
    env = routing.agent_env(resolved, None, {}, config.providers)
    argv = ["claude", "-p", "--output-format", "json", "--allowedTools", CLAUDE_TOOLS, "--",
            task]
    *chunks, code = run(config.home, session_id, argv, env=env)
    output = b"".join(chunks).decode(errors="replace")
    event = result_event(output)
    if code != 0 or not event or event.get("is_error"):
        said = event.get("result") or output.strip()[-500:] or "no output"
        raise NegativeOutcome(f"Claude Code failed in session {session_id} (exit {code}): "
                              f"{said}")
    return str(event.get("result", ""))


def stop(session_id: str) -> None:
    """End the session now; its container removes itself."""
    container = _container(session_id)
    with contextlib.suppress(Exception):
        container.stop(timeout=2)


def list_sessions() -> list[Session]:
    return [_describe(c) for c in client().containers.list(filters={"label": LABEL})]
