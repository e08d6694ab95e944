"""Lua scripts run by EVALSHA on either client (redis-py, or the hot commands' small client),
loaded with EVAL the first time a server lacks them. Scripts touch only keys of one task
(one hash tag), so they run unchanged on a Redis Cluster."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lua:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def __call__(self, r, keys: list[str], args: list[object]) -> object:
        try:
            return r.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except Exception as exc:  # the server has not seen it yet: send the source once
            if not _no_script(exc):
                raise
            return r.execute_command("EVAL", self.source, len(keys), *keys, *args)


def _no_script(exc: Exception) -> bool:
    return getattr(exc, "code", None) == "NOSCRIPT" or type(exc).__name__ == "NoScriptError"
