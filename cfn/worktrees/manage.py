"""`cfn worktree up/down/ls/ports/env`: worktrees, their leases, files and stacks."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from cfn.config import ensure_home
from cfn.db import immediate
from cfn.errors import NegativeOutcome
from cfn.worktrees import compose, git, ports

ENV_FILE = ".cfn/worktree.env"
OVERRIDE_FILE = ".cfn/compose.override.yml"


@dataclass(frozen=True)
class Worktree:
    branch: str
    slug: str
    path: str
    base: str | None
    stack: str
    ports: dict[str, int]

    @property
    def project(self) -> str:
        return f"cfn-{self.slug}"

    def to_dict(self) -> dict:
        return {**asdict(self), "project": self.project}


def _row(db, branch: str) -> dict | None:
    return next(db.query("SELECT * FROM worktrees WHERE branch = ?", [branch]), None)


def get(db, branch: str) -> Worktree:
    row = _row(db, branch)
    if row is None:
        raise NegativeOutcome(f"no worktree for branch {branch}; create it with "
                              f"`cfn worktree up {branch}`")
    return Worktree(row["branch"], row["slug"], row["path"], row["base"], row["stack"],
                    ports.leases(db, branch))


def list_all(db) -> list[Worktree]:
    return [get(db, row["branch"]) for row in db.query("SELECT branch FROM worktrees"
                                                       " ORDER BY created_at, branch")]


def _register(db, root: Path, branch: str, path: Path | None, base: str | None) -> dict:
    """The branch's registry row, created with a unique slug and a default path if new."""
    with immediate(db):
        row = _row(db, branch)
        if row is not None:
            return row
        name = git.slug(branch)
        if next(db.query("SELECT 1 FROM worktrees WHERE slug = ?", [name]), None):
            name = f"{name[:33]}-{hashlib.sha256(branch.encode()).hexdigest()[:6]}"
        path = (path or root.parent / f"{root.name}-{name}").resolve()
        db.execute("INSERT INTO worktrees (branch, slug, path, base) VALUES (?, ?, ?, ?)",
                   [branch, name, str(path), base])
        return _row(db, branch)


def up(db, root: Path, branch: str, *, base: str | None = None, path: Path | None = None,
       start: bool = True, compose_tool: str | None = None,
       say: Callable[[str], None] = lambda _: None) -> Worktree:
    """Create (or reuse) the worktree, lease the ports its compose file publishes, write its
    files, start its stack (compose's output goes to stderr as it comes)."""
    git.check_branch(branch)
    row = _register(db, root, branch, path, base)
    if path is not None and Path(row["path"]) != path.resolve():
        raise NegativeOutcome(f"branch {branch} already has its worktree at {row['path']}")
    where = Path(row["path"])
    try:
        git.add(root, where, branch, base)
    except Exception:
        if not where.exists():
            db.execute("DELETE FROM worktrees WHERE branch = ?", [branch])
        raise
    git.exclude_state_dir(root)
    compose_file = compose.find_file(where)
    if compose_file is None:
        say(f"no compose file: nothing started, no ports leased (to give the worktree a stack, "
            f"add {compose.COMPOSE_FILES[0]} to {where} and run "
            f"`cfn worktree up {shlex.quote(branch)}` again)")
    services, volumes = compose.published(compose_file)
    wanted = [name for leases in compose.lease_names(services).values() for name, _ in leases]
    leased = ports.lease(db, branch, list(dict.fromkeys(wanted)))
    worktree = Worktree(branch, row["slug"], str(where), row["base"], row["stack"], leased)
    _write_files(worktree, services, volumes)
    if start and compose_file is not None:
        _start(db, worktree, compose_file, compose_tool, say)
    return get(db, branch)


def _start(db, worktree: Worktree, compose_file: Path, compose_tool: str | None,
           say: Callable[[str], None]) -> None:
    doing = f"starting stack {worktree.project}"
    say(doing)
    command = [*compose.tool(compose_tool), *_compose_args(worktree, compose_file), "up", "-d"]
    # recorded first: if up fails half-way, `down` still removes what it started
    db.execute("UPDATE worktrees SET stack = 'up' WHERE branch = ?", [worktree.branch])
    compose.run(command, Path(worktree.path), doing)


def _write_files(worktree: Worktree, services, volumes) -> None:
    where = Path(worktree.path)
    ensure_home(where / ".cfn")
    env = compose.env_vars(worktree.project, worktree.ports)
    (where / ENV_FILE).write_text(compose.env_file_text(env))
    (where / OVERRIDE_FILE).write_text(compose.render_override(
        worktree.branch, worktree.project, services, worktree.ports, volumes))


def _compose_args(worktree: Worktree, compose_file: Path) -> list[str]:
    where = Path(worktree.path)
    return ["-p", worktree.project, "-f", str(compose_file), "-f", str(where / OVERRIDE_FILE),
            "--env-file", str(where / ENV_FILE)]


def down(db, root: Path, branch: str, *, volumes: bool = False, remove: bool = False,
         compose_tool: str | None = None, say: Callable[[str], None] = lambda _: None) -> None:
    """Stop the stack (and its volumes), release the ports, and remove the worktree if asked
    (compose's output goes to stderr as it comes)."""
    worktree = get(db, branch)
    where = Path(worktree.path)
    compose_file = compose.find_file(where) if where.exists() else None
    if compose_file is not None and worktree.stack == "up":
        doing = f"stopping stack {worktree.project}"
        say(doing)
        compose.run([*compose.tool(compose_tool), *_compose_args(worktree, compose_file), "down",
                     *(["-v"] if volumes else [])], where, doing)
    with immediate(db):
        ports.release(db, branch)
        db.execute("UPDATE worktrees SET stack = 'down' WHERE branch = ?", [branch])
    if remove:
        if where.exists():
            git.remove(root, where)  # our .cfn/ is excluded, so it does not count as dirty
        else:  # deleted by hand: let git forget it too
            git.prune(root)
        db.execute("DELETE FROM worktrees WHERE branch = ?", [branch])


def environment(db, branch: str, say: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """The branch's variables: its names and leased ports, and REDIS_URL only while its own
    stack's Redis accepts connections (a URL to a dead port would make every later `cfn`
    command in that shell exit 4)."""
    worktree = get(db, branch)
    env = {"WORKTREE_BRANCH": branch, **compose.env_vars(worktree.project, worktree.ports)}
    port = compose.redis_port(worktree.ports)
    if port is not None and worktree.stack == "up" and ports.listening(port):
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    elif port is not None:
        say(f"{worktree.project}'s redis is not running on port {port}, so REDIS_URL is not "
            f"set (`cfn worktree up {shlex.quote(branch)}` starts it)")
    return env
