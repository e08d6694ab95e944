"""What `cfn daemon status` shows: this machine's daemon, every daemon serving the queue,
whether Claude Code is here, the queue, the budgets, and a row per worker."""

from __future__ import annotations

import subprocess
import time
from typing import TYPE_CHECKING

from cfn.coordination import daemon as daemon_state
from cfn.daemon import headless, queue, runner, service, store, workers

if TYPE_CHECKING:
    from cfn.project import Project


def claude() -> dict:
    """Whether Claude Code is installed here, and its version."""
    path = headless.claude_path()
    if path is None:
        return {"available": False, "path": None, "version": None}
    try:  # stdin closed: a CLI that waits on it must not hang status
        done = subprocess.run([path, "--version"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=15)
        version = done.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        version = None
    return {"available": True, "path": path, "version": version}


def status(project: Project) -> dict:
    home = project.home
    here = service.running(home)
    options = service.Options.from_dict(here["options"]) if here and "options" in here \
        else service.Options()
    namespace = service.namespace(project)
    r, conn = project.redis, queue.connection(project)
    found_claude = claude()
    last = daemon_state.last_runs(r, namespace)
    due = daemon_state.schedule(r, namespace)
    config = project.config
    return {
        "daemon": {"running": here is not None, **(here or {}),
                   "last_exit": None if here else service.last_exit(home)},
        "daemons": daemon_state.alive(r, namespace),
        "claude": found_claude,
        "queue": {"namespace": namespace, **queue.counts(conn, namespace),
                  "dead_letters": queue.dead_letters(conn, namespace)},
        "budgets": {**daemon_state.usage(r, namespace),
                    "runs_per_hour": config.daemon_runs_per_hour,
                    "runs_per_day": config.daemon_runs_per_day,
                    "spend_per_day_usd": config.daemon_spend_per_day,
                    "max_concurrent": config.daemon_max_concurrent},
        "workers": [_row(w, options, last.get(w.name), due.get(w.name), scheduled)
                    for w, scheduled in _workers(project, options, here is not None)],
        "recent": store.recent(project.sqlite, limit=10),
    }


def _workers(project: Project, options: service.Options, running: bool):
    scheduled = {w.name for w in workers.select(options.workers, project.root)} \
        if running and options.schedule else set()
    for worker in sorted(workers.load_all(project.root).values(), key=lambda w: w.name):
        yield workers.with_sandbox(worker, options.sandbox), worker.name in scheduled


def _row(worker: workers.Worker, options: service.Options, last: dict | None,
         due: float | None, scheduled: bool) -> dict:
    mode, why = runner.mode_for(worker, options.headless, options.runtime)
    return {
        "name": worker.name, "description": worker.description, "mode": worker.mode,
        "runs_as": mode, "why": why, "enabled": worker.enabled, "scheduled": scheduled,
        "sandbox": worker.sandbox if worker.mode == "headless" else None,
        "model": worker.model, "output_format": worker.output_format,
        "interval_s": worker.interval, "priority": worker.priority,
        "last_run": last, "next_run": due if scheduled and worker.interval else None,
        "next_in_s": max(0.0, due - time.time()) if scheduled and due else None,
    }
