"""The client-side retry policy for commands other than blocking waits (cfn.outage): keep
reconnecting, with capped exponential backoff, until the reconnect window has passed since
the first failure. Waits retry on their own terms (until their deadline), so inside one
(`outage.waiting`) a failure is raised at once."""

from __future__ import annotations

import socket
import time

from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

from cfn import outage


class Reconnecting(Retry):
    def __init__(self, window_s: float):
        super().__init__(ExponentialBackoff(cap=outage.BACKOFF_CAP_S, base=outage.BACKOFF_FIRST_S),
                         -1, (ConnectionError, TimeoutError, socket.timeout))
        self.window_s = window_s

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        first_failure, failures = None, 0
        while True:
            try:
                return do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                outage.failed()
                fail(error, failures) if with_failure_count else fail(error)
                now = time.monotonic()
                first_failure = first_failure or now
                if outage.waiting.get() or now - first_failure >= self.window_s:
                    raise error
                time.sleep(outage.backoff(failures))
