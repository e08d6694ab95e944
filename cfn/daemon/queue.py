"""The worker queue, on rq: one rq queue per priority, taken strictly in priority order.

rq gives what the daemon needs and keeps it in Redis, where daemons on several machines
share it: a job's consumer beats while it runs, and a job whose beats stop (its daemon
died) is abandoned, then retried by another daemon (at-least-once); failed jobs are
retried with backoff; a job that fails every retry lands in the failed registry (the dead
letters); results live for a TTL. cfn changes two things: the visibility timeout (rq
waits a fixed 60 s past the last beat; a daemon takes a job over within
DAEMON_MONITOR_S + DAEMON_VISIBILITY_MARGIN_S), and which function a job may name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rq import Queue, Retry, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from cfn import defaults, keys
from cfn.daemon.workers import PRIORITIES
from cfn.errors import InvalidInput

if TYPE_CHECKING:
    import redis

    from cfn.daemon.workers import Worker as WorkerDef
    from cfn.project import Project

JOB_FUNCTION = "cfn.daemon.runner.run"
JOB_MARGIN_S = 120  # a job outlives its worker's own timeout by this much before rq ends it


class CfnJob(Job):
    """A job that runs only cfn's job function: a job names its function in Redis, and a
    consumer must never import and call whatever a key says."""

    @property
    def func(self):
        if self.func_name != JOB_FUNCTION:
            raise InvalidInput(f"job {self.id} names {self.func_name!r}; cfn's daemon runs "
                               f"only {JOB_FUNCTION}")
        return super().func


class Consumer(Worker):
    """rq's forking worker, with cfn's visibility timeout."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return defaults.DAEMON_MONITOR_S + defaults.DAEMON_VISIBILITY_MARGIN_S


def connection(project: Project) -> redis.Redis:
    """A client for rq on the Redis the project reached: rq wants bytes, not text."""
    import redis

    client = project.redis
    if not isinstance(client, redis.Redis):
        raise InvalidInput("the worker daemon's queue (rq) cannot run on Redis Cluster: "
                           "give the daemon a plain Redis (CFN_REDIS_URL)")
    target = project.target
    return redis.Redis.from_url(project.redis_url, username=target.username,
                                password=target.password,
                                socket_connect_timeout=target.connect_timeout,
                                health_check_interval=30, driver_info=None)


def queues(conn: redis.Redis, namespace: str) -> list[Queue]:
    """The namespace's queues, highest priority first (the order consumers take them in)."""
    return [Queue(keys.daemon_queue(namespace, p), connection=conn, job_class=CfnJob,
                  serializer=JSONSerializer) for p in PRIORITIES]


def enqueue(conn: redis.Redis, namespace: str, worker: WorkerDef, *, origin: str,
            headless: bool, sandbox: str | None, backoff: tuple[int, ...]) -> Job:
    """Queue a run of `worker` at its priority, retried after each of `backoff`'s delays
    when it fails; returns its job."""
    queue = queues(conn, namespace)[PRIORITIES.index(worker.priority)]
    return queue.enqueue_call(
        JOB_FUNCTION, kwargs={"worker": worker.name, "origin": origin,
                              "headless": headless, "sandbox": sandbox},
        timeout=int(worker.timeout) + JOB_MARGIN_S,
        result_ttl=defaults.DAEMON_RESULT_TTL_S, failure_ttl=defaults.DAEMON_DEAD_TTL_S,
        retry=Retry(max=len(backoff), interval=list(backoff)),
        description=f"{worker.name} ({origin})", meta={"worker": worker.name})


def fetch(conn: redis.Redis, job_id: str) -> Job | None:
    from rq.exceptions import NoSuchJobError

    try:
        return CfnJob.fetch(job_id, connection=conn, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def reclaim(conn: redis.Redis, namespace: str) -> None:
    """Jobs whose consumer stopped beating go back to their queue (or, out of retries, to
    the dead letters): what rq's own maintenance does every 10 minutes, done every tick."""
    for queue in queues(conn, namespace):
        StartedJobRegistry(queue=queue).cleanup()


def counts(conn: redis.Redis, namespace: str) -> dict:
    """Jobs waiting per priority, running, and dead (failed every retry)."""
    found = {"queued": {}, "running": 0, "dead": 0}
    for priority, queue in zip(PRIORITIES, queues(conn, namespace), strict=True):
        found["queued"][priority] = queue.count
        found["running"] += StartedJobRegistry(queue=queue).count
        found["dead"] += FailedJobRegistry(queue=queue).count
    return found


def dead_letters(conn: redis.Redis, namespace: str) -> list[dict]:
    """The jobs that failed every retry, and why."""
    found = []
    for queue in queues(conn, namespace):
        ids = FailedJobRegistry(queue=queue).get_job_ids()
        for job in CfnJob.fetch_many(ids, connection=conn, serializer=JSONSerializer):
            if job is not None:
                found.append({"job_id": job.id, "worker": job.meta.get("worker"),
                              "error": failure(job)})
    return found


def failure(job: Job) -> str | None:
    """The last line of what a failed job raised."""
    latest = job.latest_result()
    lines = (latest.exc_string or "").strip().splitlines() if latest else []
    return lines[-1] if lines else None
