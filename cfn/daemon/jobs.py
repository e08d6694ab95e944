"""Triggering a worker by hand, and following its job to the end."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfn.daemon import queue, service, workers
from cfn.errors import InvalidInput, NegativeOutcome, TimedOut

if TYPE_CHECKING:
    from cfn.project import Project

POLL_S = 0.1
ENDED = ("finished", "failed", "stopped", "canceled")


@dataclass(frozen=True)
class Job:
    id: str
    worker: str
    status: str  # queued | scheduled | started | finished | failed | ...
    result: dict | None = None  # what the run recorded (cfn.daemon.runner)
    error: str | None = None  # why the job itself failed (after its retries)
    retries_left: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "finished" and bool(self.result) and \
            self.result.get("status") == "success"

    def to_dict(self) -> dict:
        return {"job_id": self.id, "worker": self.worker, "status": self.status,
                "result": self.result, "error": self.error, "retries_left": self.retries_left}


def trigger(project: Project, name: str, *, headless: bool, sandbox: str | None) -> Job:
    """Queue a run of worker `name` now (at its priority), whether or not it is enabled."""
    if sandbox is not None and sandbox not in workers.SANDBOXES:
        raise InvalidInput(f"sandbox must be one of {', '.join(workers.SANDBOXES)}")
    worker = workers.get(name, project.root)
    conn = queue.connection(project)
    job = queue.enqueue(conn, service.namespace(project), worker, origin="trigger",
                        headless=headless, sandbox=sandbox,
                        backoff=project.config.daemon_retry_backoff)
    return Job(job.id, name, _text(job.get_status(refresh=False)))


def get(project: Project, job_id: str) -> Job | None:
    job = queue.fetch(queue.connection(project), job_id)
    if job is None:
        return None
    status = _text(job.get_status())
    result = job.return_value() if status == "finished" else None
    error = queue.failure(job) if status == "failed" else None
    return Job(job.id, job.meta.get("worker", "?"), status, result, error, job.retries_left)


def wait(project: Project, job_id: str, timeout: float) -> Job:
    """Block until the job ended (TimedOut after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        job = get(project, job_id)
        if job is None:
            raise NegativeOutcome(f"no job {job_id} (finished jobs are kept for a week)")
        if job.status in ENDED:
            return job
        if time.monotonic() >= deadline:
            raise TimedOut(f"job {job_id} ({job.worker}) is still {job.status} after "
                           f"{timeout:g}s; `cfn daemon status` shows it")
        time.sleep(POLL_S)


def _text(status) -> str:
    """rq's JobStatus (a str enum) as its plain value."""
    return str(getattr(status, "value", status) or "unknown")
