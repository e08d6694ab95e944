"""One job, in a consumer's work horse: the mode the worker runs in, its budget, the run
itself, and its record (SQLite on this machine, the worker's last run in Redis for every
daemon's status, the job's result in rq)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import TYPE_CHECKING

from cfn.coordination import daemon as daemon_state
from cfn.daemon import headless, local, store, workers

if TYPE_CHECKING:
    from cfn.daemon.workers import Worker
    from cfn.project import Project

# what a consumer tells its work horses (set by cfn.daemon.service for its consumers)
ROOT_ENV, QUEUE_ENV, RUNTIME_ENV, SANDBOX_ENV, DAEMON_ENV = (
    "CFN_DAEMON_ROOT", "CFN_DAEMON_QUEUE", "CFN_DAEMON_RUNTIME", "CFN_DAEMON_SANDBOX",
    "CFN_DAEMON_ID")


def run(worker: str, origin: str, headless: bool, sandbox: str | None) -> dict:
    """The job function rq calls (cfn.daemon.queue.JOB_FUNCTION). The sandbox a daemon
    running jobs was given wins over the job's: it knows where it runs (a container pool's
    containers are their workers' sandbox)."""
    from rq import get_current_job

    from cfn.project import Project

    job = get_current_job()
    with Project.open(os.environ[ROOT_ENV]) as project:
        return execute(project, worker, job_id=job.id if job else uuid.uuid4().hex,
                       origin=origin, want_headless=headless,
                       sandbox=os.environ.get(SANDBOX_ENV) or sandbox,
                       runtime=os.environ.get(RUNTIME_ENV, "process"),
                       namespace=os.environ[QUEUE_ENV])


def mode_for(worker: Worker, want_headless: bool, runtime: str) -> tuple[str, str | None]:
    """How `worker` runs: "headless", "local" or "skip", and why when not as configured."""
    if worker.mode == "local":
        return "local", None
    if not want_headless:
        why = "headless runs are off (cfn daemon start --headless, or trigger --headless)"
    elif runtime == "process" and headless.claude_path() is None:
        why = "Claude Code (claude) is not installed"
    else:
        return "headless", None
    if worker.has_local:
        return "local", why
    return "skip", f"{why}, and {worker.name} has no local version"


def execute(project: Project, name: str, *, job_id: str, origin: str, want_headless: bool,
            sandbox: str | None, runtime: str, namespace: str) -> dict:
    """Run worker `name` once and record it; returns the job's result."""
    worker = workers.with_sandbox(workers.get(name, project.root), sandbox)
    mode, reason = mode_for(worker, want_headless, runtime)
    if mode == "headless" and (refused := _over_budget(project, namespace, job_id)):
        mode, reason = "skip", refused
    started = time.time()
    if mode == "skip":
        row = store.skipped(project.sqlite, job_id=job_id, worker=name, origin=origin,
                            mode=worker.mode, reason=reason)
        return _finished(project, namespace, worker, job_id, row, started, "skipped",
                         worker.mode, reason, None, 0)
    row = store.start(project.sqlite, job_id=job_id, worker=name, origin=origin, mode=mode,
                      sandbox=worker.sandbox if mode == "headless" else None,
                      model=worker.model if mode == "headless" else None, reason=reason)
    violations = 0
    try:
        if mode == "local":
            status, result = "success", local.run(name, project, workers.load_all(project.root))
            store.finish(project.sqlite, row, status=status, result=result)
        else:
            answer = headless.run(project, worker, job_id=job_id, runtime=runtime)
            status, result, reason = answer.status, answer.result, answer.reason or reason
            violations = len(answer.violations)
            _record_answer(project, namespace, row, answer)
    except Exception as exc:  # recorded, then rq retries the job (or keeps it dead)
        store.finish(project.sqlite, row, status="error", reason=f"{type(exc).__name__}: {exc}")
        raise
    return _finished(project, namespace, worker, job_id, row, started, status, mode, reason,
                     result, violations)


def _over_budget(project: Project, namespace: str, job_id: str) -> str | None:
    config = project.config
    refused = daemon_state.reserve_headless(
        project.redis, namespace, job_id, per_hour=config.daemon_runs_per_hour,
        per_day=config.daemon_runs_per_day, spend_limit=config.daemon_spend_per_day)
    if refused is None:
        return None
    limit = {"runs_per_hour": config.daemon_runs_per_hour,
             "runs_per_day": config.daemon_runs_per_day,
             "spend_per_day": f"${config.daemon_spend_per_day:g}"}[refused]
    return (f"budget reached: {refused.replace('_', ' ')} is {limit} "
            f"(daemon_{refused} in cfn.toml)")


def _record_answer(project: Project, namespace: str, row: int,
                   answer: headless.Answer) -> None:
    if answer.cost_usd:
        daemon_state.add_spend(project.redis, namespace, answer.cost_usd)
    store.finish(project.sqlite, row, status=answer.status, reason=answer.reason,
                 result=None if isinstance(answer.result, str) else answer.result,
                 output=answer.output, violations=answer.violations,
                 agent_run_id=answer.run_id, input_tokens=answer.input_tokens,
                 output_tokens=answer.output_tokens, cost_usd=answer.cost_usd)


def _finished(project: Project, namespace: str, worker: Worker, job_id: str, row: int,
              started: float, status: str, mode: str, reason: str | None,
              result: object, violations: int) -> dict:
    """The summary every daemon's status shows (in Redis), and the job's result."""
    summary = {"job_id": job_id, "worker": worker.name, "status": status, "mode": mode,
               "reason": reason, "started_at": started, "finished_at": time.time(),
               "daemon": os.environ.get(DAEMON_ENV) or f"{socket.gethostname()}-{os.getpid()}",
               "run": row, "violations": violations}
    daemon_state.record_last(project.redis, namespace, worker.name, summary)
    return {**summary, "result": result}
