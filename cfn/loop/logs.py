"""Every agent's log of a task, line by line, as `docker compose logs` gives a project's.

A run's output goes to its log file (`log_path` in the agents table, under
.cfn/agents/T/). Following reads what each file gained, waking on the task's events
(a blocking read) or every quarter second, until no run of the task is live.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfn import keys
from cfn.coordination import streams

if TYPE_CHECKING:
    from cfn.project import Project

FOLLOW_TICK_S = 0.25


@dataclass(frozen=True)
class LogLine:
    agent_id: str
    text: str
    at: float  # when it was written, as near as cfn knows: the file's mtime, or when read


class _Tail:
    """One run's log file, read from where the last read stopped (whole lines only)."""

    def __init__(self, agent_id: str, path: Path):
        self.agent_id, self.path, self.position, self.partial = agent_id, path, 0, b""

    def read(self, *, flush: bool = False) -> list[LogLine]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.position)
            chunk = self.partial + handle.read()
            self.position = handle.tell()
        at = self.path.stat().st_mtime
        *lines, self.partial = chunk.split(b"\n")
        if flush and self.partial:
            lines, self.partial = [*lines, self.partial], b""
        return [LogLine(self.agent_id, line.decode(errors="replace"), at) for line in lines]


def task_logs(project: Project, task_id: str, *, follow: bool = False,
              since_s: float | None = None, tail: int | None = None) -> Iterator[LogLine]:
    """The task's agents' log lines, run by run; with `follow`, then each new line as it
    comes until neither the loop nor any run of the task is live. `since_s`: only runs
    live in the last that many seconds; `tail`: only each run's last that many lines."""
    cutoff = None if since_s is None else time.time() - since_s
    tails: dict[int, _Tail] = {}
    for tail_ in _add_new_runs(project, task_id, tails, cutoff):
        lines = tail_.read(flush=not follow)
        yield from lines if tail is None else lines[max(len(lines) - tail, 0):]
    if not follow:
        return
    key, last_id = keys.events(task_id), "$"
    while True:
        writing = _still_writing(project, task_id)
        _add_new_runs(project, task_id, tails, cutoff)
        for tail_ in tails.values():
            yield from tail_.read(flush=not writing)
        if not writing:
            return
        # wake on the loop's next event (a phase starting), or soon for lines in between
        found = streams.read_after(project.redis, key, last_id,
                                   time.monotonic() + FOLLOW_TICK_S, slice_s=FOLLOW_TICK_S)
        if found:
            last_id = found[0][1][-1][0]


def _add_new_runs(project: Project, task_id: str, tails: dict[int, _Tail],
                  cutoff: float | None) -> list[_Tail]:
    """Follow the task's runs not followed yet (those that ended before `cutoff` left out);
    returns the ones added."""
    from cfn.agents import runs

    added = []
    for row in runs.listing(project.db, task_id, latest_only=False):
        if row["id"] in tails or not row["log_path"]:
            continue
        if cutoff is not None and row["finished_at"] and \
                runs.timestamp(row["finished_at"]) < cutoff:
            continue
        tails[row["id"]] = _Tail(row["agent_id"], Path(row["log_path"]))
        added.append(tails[row["id"]])
    return added


def _still_writing(project: Project, task_id: str) -> bool:
    """Whether a run of the task is live, or its loop is driven (more runs are to come)."""
    from cfn.agents import runs
    from cfn.loop import store

    if any(row["status"] in runs.LIVE for row in runs.listing(project.db, task_id)):
        return True
    status = store.status(project.db, task_id)
    return status is not None and status["status"] == "running" and \
        project.loop_orchestrated(task_id)
