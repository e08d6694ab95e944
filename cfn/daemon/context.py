"""The context a headless worker's prompt carries: the files its patterns match, capped,
and what changed recently in the repository.

    found = build(root, ["src/**/*.py"], max_files=20, max_chars=5000, cache_dir=cache)
    found.text   # "--- src/a.py ---\n...", the files joined by blank lines

Files are walked by cfn.daemon.tree (the skip rules every worker shares). With a cache
directory, file texts are kept per (path, size, mtime) in one JSON file per set of
patterns and caps, so an unchanged tree is not read again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cfn.daemon import sensitive, tree

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass(frozen=True)
class ContextFile:
    """One file of a context: its path relative to the root, how many characters of it the
    context holds, whether it was cut to the cap, and whether its text came from the cache."""

    path: str
    chars: int
    truncated: bool
    from_cache: bool
    size: int = 0  # its size on disk, in bytes


@dataclass
class Context:
    """The files (sorted, capped), their text, and how many matched before the cap."""

    files: list[ContextFile] = field(default_factory=list)
    text: str = ""
    matched: int = 0

    @property
    def cache_hits(self) -> int:
        """How many files' texts came from the cache rather than the disk."""
        return sum(f.from_cache for f in self.files)

    def to_dict(self) -> dict:
        return {"files": [asdict(f) for f in self.files], "matched": self.matched,
                "cache_hits": self.cache_hits, "chars": len(self.text)}


def redact(text: str) -> str:
    """`text` with secret-looking values masked (before it goes to a provider)."""
    return sensitive.redact(text)


def build(root: Path, patterns: Sequence[str], *, max_files: int = 20, max_chars: int = 5000,
          cache_dir: Path | None = None) -> Context:
    """The files under `root` matching the glob `patterns`, in sorted order: at most
    `max_files`, each cut to `max_chars` characters (the text says where it was cut).
    Binary and unreadable files are left out and do not count as matched."""
    matcher = tree.compile_patterns(patterns)
    candidates = sorted((e for e in tree.walk(root, enter=tree.named_directories(patterns))
                         if matcher.match(e.rel)), key=lambda e: e.rel)
    cache_path = _cache_path(cache_dir, patterns, max_files, max_chars) if cache_dir else None
    cached = _load_cache(cache_path) if cache_path else {}
    files, texts, kept, matched = [], [], {}, 0
    for entry in candidates:
        if len(files) >= max_files:  # past the cap only counted (`matched`), not read
            matched += tree.is_text(entry.path)
            continue
        got = _text(entry, max_chars, cached)
        if got is None:
            continue  # binary or unreadable: not context
        matched += 1
        text, truncated, hit = got
        kept[entry.rel] = {"size": entry.size, "mtime_ns": entry.mtime_ns, "text": text,
                           "truncated": truncated}
        files.append(ContextFile(entry.rel, len(text), truncated, hit, entry.size))
        texts.append(f"--- {entry.rel} ---\n{text}" + (
            f"\n[cut: the first {max_chars} characters of {entry.size} bytes]"
            if truncated else ""))
    if cache_path and kept != cached:
        _save_cache(cache_path, patterns, kept)
    return Context(files, "\n\n".join(texts), matched)


def _text(entry: tree.Entry, max_chars: int, cached: dict) -> tuple[str, bool, bool] | None:
    """(text, truncated, from the cache) of a file; None for a binary or unreadable one."""
    known = cached.get(entry.rel)
    if known and known.get("size") == entry.size and known.get("mtime_ns") == entry.mtime_ns:
        return known["text"], bool(known["truncated"]), True
    read = tree.read_text(entry.path, max_chars)
    return None if read is None else (read[0], read[1], False)


def _cache_path(cache_dir: Path, patterns: Sequence[str], max_files: int,
                max_chars: int) -> Path:
    """One cache file per (patterns, caps): a cut text is valid only under its own caps."""
    key = json.dumps([list(patterns), max_files, max_chars, CACHE_VERSION])
    return cache_dir / f"context-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def _load_cache(path: Path) -> dict:
    """The cached files by path; {} when there is no cache or it cannot be used."""
    try:
        data = json.loads(path.read_text())
        files = data["files"] if data.get("version") == CACHE_VERSION else {}
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # missing, or damaged (a crash mid-write cannot: writes are atomic)


def _save_cache(path: Path, patterns: Sequence[str], files: dict) -> None:
    """Replace the cache file atomically, owner-only: file texts may hold secrets."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".context-")
        try:  # mkstemp creates the file 0600
            with os.fdopen(handle, "w") as out:
                json.dump({"version": CACHE_VERSION, "patterns": list(patterns),
                           "files": files}, out)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:  # a cache that cannot be written only costs a re-read
        log.warning("context cache %s not written: %s", path, exc)


def recent_changes(root: Path, limit: int = 20) -> str:
    """What changed recently in the git repository at `root`: the uncommitted changes
    (`git status --porcelain`) and the last `limit` commits with their files, newest
    first; "" when `root` is no git repository or git is missing."""
    if not tree.is_repo(root):
        return ""
    parts = []
    status = tree.git(root, "status", "--porcelain")
    if status and status.strip():
        parts.append("Uncommitted changes (git status --porcelain):\n" + status.rstrip())
    history = tree.git(root, "log", f"-n{max(1, int(limit))}", "--name-only",
                       "--format=%h %ad %s", "--date=short")
    if history and history.strip():  # none in a repository without commits
        parts.append(f"Last commits (newest first, up to {limit}):\n" + history.strip())
    return "\n\n".join(parts)
