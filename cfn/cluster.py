"""Redis Cluster: detected when connecting, served by redis-py's RedisCluster.

No setting says "cluster": cfn.backend.connect asks the server it reached (`enabled`) and,
on a cluster node, hands over to `client`. Every key of a task carries the task's hash tag
(cfn.keys), so a task's transactions and scripts touch one slot, which one node serves.

A failover (a master dies, the cluster promotes its replica after cluster-node-timeout and
an election) must not end a command that could simply wait for it. redis-py retries such a
command at once, before the replica is promoted, and uses its retry policy's backoff only in
transactions; `Failover` is that policy for both, by time: attempts with backoff until
`window` seconds passed since the first failure. Inside a blocking wait (cfn.outage.waiting)
the wait's own deadline governs instead, so the two never stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
)
from redis.retry import Retry

from cfn.errors import BackendUnavailable

if TYPE_CHECKING:
    import redis

T = TypeVar("T")

# the cluster could not serve a command, so Redis ran nothing: worth another attempt
UNSERVED = (ConnectionError, TimeoutError, ClusterDownError, SlotNotCoveredError)


def enabled(client: redis.Redis) -> bool:
    """True if the server runs in cluster mode, as its HELLO says: any user may ask that,
    where INFO is refused to agents' ACL users (@dangerous)."""
    try:
        reply = client.execute_command("HELLO")  # no version: the protocol stays as it is
    except ResponseError:
        return False  # older than Redis 6.2: no cluster cfn could use
    return hello_fields(reply).get("mode") == "cluster"


def hello_fields(reply: dict | list) -> dict:
    """HELLO's reply as a dict: RESP3 sends a map, RESP2 a flat list of names and values."""
    return reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))


def client(url: str, *, retries: int, window: float, **options: Any) -> Cluster:
    """A cluster client starting from the node at `url` (a redis:// or rediss:// URL: the
    cluster names its nodes by address), with redis-py connection `options`, retrying for
    `window` seconds (a failover takes cluster-node-timeout, 15 s by default, and an
    election); `retries` 0 turns that off, as CFN_RETRIES=0 turns retries off."""
    if url.startswith("unix://"):
        raise BackendUnavailable(
            "the Redis at this unix socket is a cluster node, and a cluster is reached by "
            "address: point REDIS_URL at redis://HOST:PORT of one of its nodes")
    policy = Failover(retries, window=window if retries else 0.0)
    try:
        return Cluster.from_url(url, retry=policy, decode_responses=True, **options)
    except RedisClusterException as exc:
        raise BackendUnavailable(f"cannot use the Redis Cluster: {exc}; check that its "
                                 "slots are all served (redis-cli --cluster check)") from None


class Failover(Retry):
    """Attempts with backoff until `window` s passed since the first failure. `retries` is
    what redis-py asks for (`get_retries`): how many times it re-reads the cluster's layout
    and tries again at once, within each attempt."""

    def __init__(self, retries: int, *, window: float):
        super().__init__(ExponentialBackoff(cap=1.0, base=0.05), retries, UNSERVED)
        self.window = window

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> T:
        self._backoff.reset()
        failures, deadline = 0, None
        while True:
            try:
                return do()
            except self._supported_errors as exc:
                if is_retryable and not is_retryable(exc):
                    raise
                failures += 1
                if with_failure_count:
                    fail(exc, failures)
                else:
                    fail(exc)
                if not isinstance(exc, UNSERVED):  # a redirect (MOVED, ASK): follow it
                    if failures > RedisCluster.RedisClusterRequestTTL:
                        raise
                    continue
                deadline = deadline or time.monotonic() + self.window
                pause = self._backoff.compute(failures)
                if _waiting() or time.monotonic() + pause > deadline:
                    if isinstance(exc, (ClusterDownError, SlotNotCoveredError)):
                        # to cfn, a Redis it cannot reach: exit 4, and ridden out in waits
                        raise ConnectionError(f"the cluster cannot serve it now: {exc}") \
                            from exc
                    raise
                time.sleep(pause)


def _waiting() -> bool:
    """True inside a blocking wait, which rides outages to its own deadline (cfn.outage)."""
    from cfn import outage

    return outage.waiting.get()


class Cluster(RedisCluster):
    """RedisCluster whose every command, not only transactions, runs under its retry
    policy (Failover): redis-py's own attempts follow each other at once."""

    def _internal_execute_command(self, *args: Any, **kwargs: Any) -> Any:
        attempt = super()._internal_execute_command
        return self.retry.call_with_retry(lambda: attempt(*args, **kwargs), lambda _exc: None)
