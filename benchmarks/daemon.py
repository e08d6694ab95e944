"""The worker daemon's queue, side by side with rq's own worker on the same Redis.

(a) trigger-to-start latency: one job queued while every consumer idles, from the enqueue
    to the moment its work starts (rq's `started_at`), and to its end;
(b) throughput: N jobs queued at once, drained by two consumers: jobs per second.

rq's own worker (`rq.Worker`, two processes, forking a work horse per job as cfn's
consumers do) runs a function that does nothing: the floor of the queue itself. cfn's
daemon runs a real worker (`map` of a one-file project): each job opens the project, loads
the worker definitions, runs the worker and records it in SQLite and Redis. The ratio is
what cfn's bookkeeping costs on top of the queue.

Run: python benchmarks/daemon.py [--samples N] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue
from rq.job import Job
from scratch import redis_and_project

NOOP = "benchmarks.daemon.noop"


def noop() -> None:
    """rq's job: nothing at all."""


def rq_workers(url: str, queue: str, count: int) -> list[subprocess.Popen]:
    """rq's own worker processes (its CLI), idle on `queue`."""
    repo = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": repo}
    return [subprocess.Popen([sys.executable, "-m", "rq.cli", "worker", "-u", url, "-q", queue,
                              "--serializer", "rq.serializers.JSONSerializer", "-n",
                              f"bench-{queue}-{n}"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for n in range(count)]


def wait_all(conn: redis.Redis, ids: list[str], seconds: float = 300) -> list[Job]:
    deadline = time.monotonic() + seconds
    while True:
        jobs = Job.fetch_many(ids, connection=conn, serializer="rq.serializers.JSONSerializer")
        if all(j is not None and j.get_status() in ("finished", "failed") for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            raise SystemExit("jobs did not finish in time")
        time.sleep(0.01)


def latency(enqueue, conn: redis.Redis, samples: int) -> tuple[list[float], list[float]]:
    """ms from the enqueue to the job's start, and to its end (all consumers idle)."""
    to_start, to_end = [], []
    for _ in range(samples):
        before = time.time()
        job_id = enqueue()
        (job,) = wait_all(conn, [job_id])
        to_start.append((job.started_at.timestamp() - before) * 1000)
        to_end.append((job.ended_at.timestamp() - before) * 1000)
        time.sleep(0.2)  # the consumers idle again
    return to_start, to_end


def throughput(enqueue, conn: redis.Redis, jobs: int) -> float:
    started = time.perf_counter()
    ids = [enqueue() for _ in range(jobs)]
    wait_all(conn, ids)
    return jobs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, _sock, project, env = redis_and_project(Path(tmp))
        url = env["REDIS_URL"]
        conn = redis.Redis.from_url(url)
        (project / "app.py").write_text("import os\n")
        env.update(CFN_DAEMON_MAX_CONCURRENT="2", CFN_DAEMON_QUEUE="bench")
        workers = rq_workers(url, "plain", 2)
        subprocess.run([sys.executable, "-m", "cfn", "daemon", "start", "--no-schedule"],
                       cwd=project, env=env, check=True, stdout=subprocess.DEVNULL)
        try:
            report(conn, project, env, args)
        finally:
            subprocess.run([sys.executable, "-m", "cfn", "daemon", "stop"], cwd=project,
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for worker in workers:
                worker.terminate()
            server.terminate()


def report(conn: redis.Redis, project: Path, env: dict, args) -> None:
    from cfn.daemon import jobs
    from cfn.project import Project

    plain = Queue("plain", connection=conn, serializer="rq.serializers.JSONSerializer")
    os.environ.update(env)
    with Project.open(project) as cfn_project:
        rows = {
            "rq's worker (no-op job)": lambda: plain.enqueue(NOOP).id,
            "cfn daemon (map job)": lambda: jobs.trigger(cfn_project, "map", headless=False,
                                                         sandbox=None).id,
        }
        for run in rows.values():  # warm both: imports, the project's database
            latency(run, conn, 2)
        figures = {name: (*latency(run, conn, args.samples), throughput(run, conn, args.jobs))
                   for name, run in rows.items()}
    print(f"{'':28}{'to start p50':>14}{'p95':>10}{'to end p50':>12}{'jobs/s':>9}")
    for name, (start, end, rate) in figures.items():
        print(f"{name:28}{statistics.median(start):11.1f} ms{_p95(start):7.1f} ms"
              f"{statistics.median(end):9.1f} ms{rate:9.1f}")
    (rq_start, _, rq_rate), (cfn_start, _, cfn_rate) = figures.values()
    start_ratio = statistics.median(cfn_start) / statistics.median(rq_start)
    print(f"\ntrigger-to-start, cfn/rq: {start_ratio:.2f}x; throughput, cfn/rq: "
          f"{cfn_rate / rq_rate:.2f}x ({args.jobs} jobs, 2 consumers each, {args.samples} "
          "latency samples)")


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


if __name__ == "__main__":
    main()
