"""The git side of worktrees: names, branches, `git worktree add/remove`. Argument lists only."""

from __future__ import annotations

import fcntl
import re
import subprocess
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cfn.errors import InvalidInput, NegativeOutcome


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def main_root(cwd: Path) -> Path:
    """The main worktree of the repository `cwd` is in (worktrees share its registry)."""
    found = git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=cwd)
    if found.returncode != 0:
        raise InvalidInput(f"{cwd} is not in a git repository; cfn worktree needs one")
    return Path(found.stdout.strip()).parent


def check_branch(name: str) -> str:
    """The name if git accepts it as a branch; else git's reason, exit 2."""
    checked = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True,
                             text=True, stdin=subprocess.DEVNULL)
    if checked.returncode != 0 or not name:
        reason = checked.stderr.strip().removeprefix("fatal: ") or "empty name"
        raise InvalidInput(f"git rejects branch name {name!r}: {reason}")
    return name


def exclude_state_dir(root: Path) -> None:
    """Keep .cfn/ (cfn's files in every worktree) out of `git add -A`, in git's local excludes:
    agents commit in worktrees, and the env file and override are not theirs to commit."""
    found = git("rev-parse", "--path-format=absolute", "--git-path", "info/exclude", cwd=root)
    exclude = Path(found.stdout.strip())
    lines = exclude.read_text().splitlines() if exclude.exists() else []
    if "/.cfn/" not in lines:
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("".join(f"{line}\n" for line in [*lines, "/.cfn/"]))


def slug(branch: str) -> str:
    """A compose-safe name: ASCII letters and digits joined by dashes (Ünïcode -> unicode)."""
    ascii_only = unicodedata.normalize("NFKD", branch).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_only.lower()).strip("-")[:40] or "branch"


def branch_exists(root: Path, branch: str) -> bool:
    return git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", cwd=root).returncode == 0


def registered(root: Path) -> dict[Path, str]:
    """Worktrees git knows: path -> branch."""
    listing = git("worktree", "list", "--porcelain", cwd=root).stdout
    found, path = {}, None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            path = Path(line[len("worktree "):])
        elif line.startswith("branch refs/heads/") and path is not None:
            found[path] = line[len("branch refs/heads/"):]
    return found


@contextmanager
def _one_at_a_time(root: Path) -> Iterator[None]:
    """git's worktree registry is not safe against itself: a `worktree prune` racing a
    `worktree add` deletes the half-made entry. cfn's changes to it take turns."""
    with open(root / ".git" / "cfn-worktrees.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add(root: Path, path: Path, branch: str, base: str | None) -> None:
    """Create the worktree, and the branch from `base` when it does not exist yet."""
    with _one_at_a_time(root):
        _add(root, path, branch, base)


def _add(root: Path, path: Path, branch: str, base: str | None) -> None:
    if not path.exists():
        git("worktree", "prune", cwd=root)  # forget it if it was deleted by hand
    elif registered(root).get(path) == branch:
        return  # already there: up is idempotent
    if branch_exists(root, branch):
        if base:
            raise InvalidInput(f"branch {branch} exists already; --base only applies to a new "
                               "branch")
        done = git("worktree", "add", str(path), branch, cwd=root)
    else:
        done = git("worktree", "add", "-b", branch, str(path), base or "HEAD", cwd=root)
    if done.returncode != 0:
        raise InvalidInput(f"git worktree add failed: {done.stderr.strip()}")


def prune(root: Path) -> None:
    """Let git forget worktrees deleted by hand."""
    with _one_at_a_time(root):
        git("worktree", "prune", cwd=root)


def remove(root: Path, path: Path) -> None:
    with _one_at_a_time(root):
        done = git("worktree", "remove", str(path), cwd=root)
    if done.returncode != 0:
        raise NegativeOutcome(f"git worktree remove failed: {done.stderr.strip()} "
                              "(commit or stash its changes first)")
