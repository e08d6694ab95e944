"""The project's files as the workers see them: one walker, one reader, one glob, one git.

Every worker that looks at the tree goes through here, so the same files are skipped
everywhere: version control and cfn's state directory always, dependency and cache
directories and other hidden directories unless a pattern names them, binary and
unreadable files, and symlinks that lead out of the root (an agent could plant one
pointing at ~/.ssh).
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# never entered, whatever a pattern says: .cfn holds the token secret, the database and
# agents' logs; .git's internals are no project source
NEVER = frozenset({".git", ".cfn"})
# entered only when a pattern names them (dependencies, environments, caches)
SKIPPED = frozenset({"node_modules", ".venv", "venv", "__pycache__"})
BINARY_PROBE = 8192  # a NUL byte this early means a binary file (as git decides)
GIT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Entry:
    """A regular file under the root: its path relative to the root (POSIX), size, mtime."""

    rel: str
    path: Path
    size: int
    mtime_ns: int


def walk(root: Path, *, enter: Collection[str] = ()) -> Iterator[Entry]:
    """Every regular file under `root`, by the skip rules above, in a stable order (each
    directory's files by name, then its subdirectories by name).

    `enter` names hidden or skipped directories to go into anyway. Directory symlinks are
    never followed (loops, and ways out of the root); a file symlink counts only when its
    target is a regular file inside the root.
    """
    real_root = os.path.realpath(root)
    stack = [(Path(root), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:  # unreadable or vanished directory: nothing to see there
            continue
        subdirs = []
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if _enters(entry.name, enter):
                    subdirs.append((Path(entry.path), rel + "/"))
                continue
            found = _file(entry, rel, real_root)
            if found is not None:
                yield found
        stack.extend(reversed(subdirs))  # depth first, still in sorted order


def _enters(name: str, enter: Collection[str]) -> bool:
    if name in NEVER:
        return False
    if name.startswith(".") or name in SKIPPED:
        return name in enter
    return True


def _file(entry: os.DirEntry, rel: str, real_root: str) -> Entry | None:
    """The entry as a file to read, None for anything else (FIFOs would block a reader)."""
    try:
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not target.startswith(real_root + os.sep):
                return None  # leads out of the root
            info = os.stat(target)
        else:
            info = entry.stat(follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return Entry(rel, Path(entry.path), info.st_size, info.st_mtime_ns)


def read_text(path: Path, max_chars: int | None = None) -> tuple[str, bool] | None:
    """The file's text (UTF-8, undecodable bytes replaced) and whether it was cut to
    `max_chars`; None for a binary or unreadable file. Reads no more than it needs."""
    limit = -1 if max_chars is None else 4 * max_chars + 4  # UTF-8: at most 4 bytes a char
    try:
        with open(path, "rb") as handle:
            head = handle.read(BINARY_PROBE)
            if b"\0" in head:
                return None
            rest = handle.read(-1 if limit < 0 else max(0, limit - len(head)))
    except OSError:
        return None
    text = (head + rest).decode("utf-8", errors="replace")
    if max_chars is not None and len(text) > max_chars:
        return text[:max_chars], True
    return text, False


def is_text(path: Path) -> bool:
    """Whether the file can be read and is not binary (its first block only is read)."""
    try:
        with open(path, "rb") as handle:
            return b"\0" not in handle.read(BINARY_PROBE)
    except OSError:
        return False


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, None for a binary or unreadable one."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return None if b"\0" in data[:BINARY_PROBE] else data


# --- globs ---------------------------------------------------------------------------------

def compile_patterns(patterns: Iterable[str]) -> re.Pattern[str]:
    """One regex matching a relative POSIX path against any of the glob patterns.

    `**` spans any number of directories; `*` and `?` stay within one name and, as in a
    shell, do not match a leading dot: hidden names match only a pattern that spells
    the dot (`**/.env*`).
    """
    parts = [_pattern_regex(p.strip()) for p in patterns if p.strip()]
    return re.compile("|".join(f"(?:{p})" for p in parts) or r"(?!)")


@lru_cache(maxsize=256)
def _pattern_regex(pattern: str) -> str:
    segments = [s for s in pattern.strip("/").split("/") if s and s != "."]
    out = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            out.append(r"(?:(?!\.)[^/]+/)*(?!\.)[^/]+" if last else r"(?:(?!\.)[^/]+/)*")
        else:
            out.append(_segment_regex(segment) + ("" if last else "/"))
    return "".join(out) + r"\Z"


def _segment_regex(segment: str) -> str:
    out = "" if segment.startswith(".") else r"(?!\.)"
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[" and "]" in segment[index + 2:]:
            end = segment.index("]", index + 2)
            body = segment[index + 1:end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") \
                + "]"
            index = end
        else:
            out += re.escape(char)
        index += 1
    return out


def named_directories(patterns: Iterable[str]) -> frozenset[str]:
    """Hidden or skipped directory names a pattern spells out (`.github/**/*.yml`), which
    the walker then enters."""
    names = set()
    for pattern in patterns:
        for segment in pattern.strip("/").split("/")[:-1]:
            if not any(c in segment for c in "*?[") and \
                    (segment.startswith(".") or segment in SKIPPED) and segment not in (".", ".."):
                names.add(segment)
    return frozenset(names)


# --- git ---------------------------------------------------------------------------------

def git(root: Path, *args: str, timeout: float = GIT_TIMEOUT_S) -> str | None:
    """git's output in `root`, None when git is missing, fails or outlives `timeout`."""
    done = git_run(root, *args, timeout=timeout)
    return done.stdout if done is not None and done.returncode == 0 else None


def git_run(root: Path, *args: str, timeout: float = GIT_TIMEOUT_S
            ) -> subprocess.CompletedProcess | None:
    """git run in `root` (its exit status is the caller's to read), None when git is
    missing or outlives `timeout`.

    A repository's own config could name commands git runs (core.fsmonitor on status,
    hooks): an agent can write that config, so both are switched off here.
    """
    command = ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null",
               "-c", "core.quotepath=off", "-C", str(root), *args]
    # no optional locks: a status run by the daemon must not block an agent's commit
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(command, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None


def is_repo(root: Path) -> bool:
    """Whether `root` is in a git work tree (and git is installed)."""
    return (git(root, "rev-parse", "--is-inside-work-tree") or "").strip() == "true"
