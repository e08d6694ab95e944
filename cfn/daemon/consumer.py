"""A consumer: one rq worker taking the namespace's jobs in priority order, each in a work
horse of its own. A daemon runs daemon_max_concurrent of them; their settings come from the
daemon in the environment (cfn.daemon.runner's *_ENV).

Run as: python -m cfn.daemon.consumer NAME
"""

from __future__ import annotations

import logging
import os
import sys

from cfn.daemon import queue, runner


def main() -> None:
    from rq.serializers import JSONSerializer

    from cfn import defaults
    from cfn.project import Project

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        stream=sys.stderr)
    with Project.open(os.environ[runner.ROOT_ENV]) as project:
        conn = queue.connection(project)
    consumer = queue.Consumer(
        queue.queues(conn, os.environ[runner.QUEUE_ENV]), connection=conn,
        name=sys.argv[1], serializer=JSONSerializer, job_class=queue.CfnJob,
        job_monitoring_interval=defaults.DAEMON_MONITOR_S,
        maintenance_interval=defaults.DAEMON_MAINTENANCE_S)
    # the scheduler moves retries whose backoff has passed back to their queue
    consumer.work(with_scheduler=True, logging_level="INFO")


if __name__ == "__main__":
    main()
