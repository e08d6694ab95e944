"""Connections to the coordination backend (Redis), with fallback and error translation.

`connect(target)` returns a client on the Redis of the target: with REDIS_FALLBACK_1, one
that follows whichever of the two is home (cfn.failover); on a node of a Redis Cluster
(the primary, else the fallback), a cluster client (cfn.cluster). Every process of cfn
connects here (commands through cfn.Project, supervisors with the target their spawner
reached), so all share one retry policy.
Every Redis failure leaves cfn as BackendUnavailable (exit 4) naming the URL with its
password masked (see `unavailable`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from cfn import defaults, embedded
from cfn.config import Config, mask_url
from cfn.errors import BackendUnavailable, CfnError, InvalidInput

if TYPE_CHECKING:
    import redis
    from redis.cluster import RedisCluster

    from cfn.hiredis_client import Client

# redis-py (and logging) are imported where a connection is made: a supervisor starts its
# agent first, and the hot commands never import them (see connect_small)


@dataclass(frozen=True)
class Target:
    """Where and how to connect: the URLs to try in order, and the policy. `username` and
    `password` are the configured ones; a URL carrying its own (the embedded server's
    admin) keeps them, so a fallback is never sent another server's password."""

    urls: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    connect_timeout: float = defaults.CONNECT_TIMEOUT_S
    retries: int = defaults.RETRIES  # at connect; 0 also turns reconnecting off
    reconnect_window: float = defaults.RECONNECT_WINDOW_S  # once connected (cfn.outage)
    agent: bool = False  # connecting as an agent (its own Redis user)

    @classmethod
    def of(cls, config: Config) -> Target:
        """The configured primary (the embedded server, started on demand, when none is
        configured) followed by the fallback."""
        fallback = (str(config.redis_fallback_1),) if config.redis_fallback_1 else ()
        policy = float(config.connect_timeout), int(config.retries), reconnect_window(config)
        primary = str(config.redis_url) if config.redis_url else embedded.admin_url(config.home)
        return cls((primary, *fallback), config.redis_username, config.redis_password, *policy,
                   agent=bool(config.agent_id))

    def preferring(self, url: str) -> Target:
        """The same target, trying `url` first (the one a spawner actually reached); with a
        fallback, the same: the order names the primary (cfn.failover)."""
        if len(self.urls) > 1:
            return self
        return replace(self, urls=(url, *(u for u in self.urls if u != url)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Target:
        return cls(**{**data, "urls": tuple(data["urls"])})


def _client(target: Target, url: str) -> redis.Redis:
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, TimeoutError
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        username=target.username,
        password=target.password,
        socket_connect_timeout=target.connect_timeout,
        # blocking commands hold the socket silent for at most MAX_BLOCK_S (see defaults)
        socket_timeout=socket_timeout(target.connect_timeout),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), target.retries),
        retry_on_error=[ConnectionError, TimeoutError],
        decode_responses=True,
        # skips CLIENT SETINFO and its package-metadata lookup: 5 ms a command
        driver_info=None,
    )


def connect(target: Target) -> tuple[redis.Redis | RedisCluster, str]:
    """A client on the Redis of `target` that answered a PING, and its URL."""
    from redis.exceptions import AuthenticationError, RedisError

    from cfn import cluster, failover

    if len(target.urls) > 1:  # a fallback: follow whichever server is home
        try:
            return _failover_client(target)
        except failover.ClusterNode as node:  # a cluster's own failover is followed instead
            return _cluster_client(target, node.url), node.url
    (url,) = target.urls
    client = _client(target, url)
    try:
        _ping(client, target)
        if cluster.enabled(client):
            client.close()
            return _cluster_client(target, url), url
    except RedisError as exc:
        client.close()
        if isinstance(exc, AuthenticationError) and \
                url.startswith(f"unix://{embedded.ADMIN_USER}:"):
            raise BackendUnavailable(
                f"the embedded Redis at {mask_url(url)} refused cfn's admin user: it was "
                "started by an older cfn; run `cfn redis stop` (its data stays) and try "
                "again") from None
        raise unavailable(exc, url) from None
    if target.reconnect_window:  # connected: a dropped connection is ridden out
        client.set_retry(_reconnecting(target))
    return client, url


def _reconnecting(target: Target):
    from cfn.reconnect import Reconnecting

    return Reconnecting(target.reconnect_window)


def _failover_client(target: Target) -> tuple[redis.Redis, str]:
    """A client that follows the home between the primary and the fallback (cfn.failover),
    and the home's URL now."""
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry

    from cfn import failover

    if any(url.startswith("rediss://") for url in target.urls):
        raise InvalidInput("REDIS_FALLBACK_1 with TLS (rediss://) is not supported: cfn "
                           "cannot follow a TLS server across a failover; use one Redis, or "
                           "a Redis Cluster (docs/cluster.md)")
    client = failover.client(target, _reconnecting(target) if target.reconnect_window
                             else Retry(NoBackoff(), 0))
    try:
        _ping(client, target)
    except RedisError as exc:
        client.close()
        raise unavailable(exc, _home(client)) from None
    return client, _home(client)


def _home(client: redis.Redis) -> str:
    """The URL a failover client found home last (cfn.failover)."""
    return client.connection_pool.connection_kwargs["failover"].url


def _ping(client: redis.Redis, target: Target) -> None:
    """PING; an agent whose password is refused tries again for the reconnect window: a
    Redis that restarted has lost its user until its supervisor defines it again (the next
    heartbeat). Anyone else hears of a wrong password at once."""
    import time

    from redis.exceptions import AuthenticationError

    from cfn import outage

    started, failures = time.monotonic(), 0
    while True:
        try:
            client.ping()
            return
        except AuthenticationError:
            failures += 1
            if not target.agent or time.monotonic() - started >= target.reconnect_window:
                raise
            time.sleep(outage.backoff(failures))


def _cluster_client(target: Target, url: str) -> RedisCluster:
    """A cluster client with the same credentials and timeouts as `_client`'s."""
    from cfn import cluster

    return cluster.client(url, retries=target.retries, window=target.reconnect_window,
                          username=target.username,
                          password=target.password,
                          socket_connect_timeout=target.connect_timeout,
                          socket_timeout=socket_timeout(target.connect_timeout),
                          driver_info=None)


def reconnect_window(config: Config) -> float:
    """How long a connection lost after connecting is tried again (0 with CFN_RETRIES=0)."""
    return float(config.reconnect_window) if int(config.retries) else 0.0


def socket_timeout(connect_timeout: float) -> float:
    """How long a read may wait: blocking commands hold the socket silent for at most
    MAX_BLOCK_S (see defaults)."""
    return connect_timeout + defaults.MAX_BLOCK_S


def connect_small(config: Config) -> tuple[Client, str] | None:
    """A small hiredis client (cfn.hiredis_client) on the configured Redis, and its URL, for
    the hot commands; None where `connect` must do it: a fallback configured, a URL the
    small client does not take (rediss://), the embedded server not running yet (`connect`
    starts it), no answer (`connect` retries and says why), or a Redis Cluster node (the
    small client neither follows slots nor rides a failover)."""
    from cfn.hiredis_client import Client, RedisError

    url = str(config.redis_url) if config.redis_url else embedded.running_admin_url(config.home)
    if url is None or config.redis_fallback_1:
        return None
    timeout = float(config.connect_timeout)
    try:
        client = Client.connect(url, username=config.redis_username,
                                password=config.redis_password, connect_timeout=timeout,
                                socket_timeout=socket_timeout(timeout),
                                reconnect_window=reconnect_window(config))
    except (ValueError, OSError, RedisError):
        return None
    if client.cluster:
        client.close()
        return None
    return client, url


def is_redis_error(exc: BaseException) -> bool:
    """True for an error of redis-py or of the small client."""
    from cfn.hiredis_client import RedisError

    if isinstance(exc, RedisError):
        return True
    from redis.exceptions import RedisClusterException
    from redis.exceptions import RedisError as RedisPyError

    return isinstance(exc, (RedisPyError, RedisClusterException))


def _kind(exc: Exception) -> str:
    """"permission", "auth", "connection" or "command": what a Redis error is to a user,
    whichever client raised it."""
    from cfn.hiredis_client import RedisError

    if isinstance(exc, RedisError):
        return exc.kind
    from redis.exceptions import (
        AuthenticationError,
        ClusterError,
        ConnectionError,
        NoPermissionError,
        RedisClusterException,
        TimeoutError,
    )

    if isinstance(exc, NoPermissionError):
        return "permission"
    if isinstance(exc, AuthenticationError) or str(exc).startswith(("NOAUTH", "WRONGPASS")):
        return "auth"
    # a cluster that cannot serve a slot now (CLUSTERDOWN, a failover) is unreachable too
    if isinstance(exc, (ConnectionError, TimeoutError, ClusterError, RedisClusterException)):
        return "connection"
    return "command"


def _wrong_type(exc: Exception) -> bool:
    """True if Redis said WRONGTYPE, alone or as a pipelined command's error."""
    reply = str(exc).split(" of pipeline caused error: ", 1)[-1]
    return reply.startswith("WRONGTYPE")


def unavailable(exc: Exception, url: str) -> CfnError:
    """What a Redis error at `url` means to a user: BackendUnavailable (exit 4), or
    InvalidInput (exit 2) for a key holding the wrong type."""
    where = mask_url(url)
    kind = _kind(exc)
    if kind == "permission":
        return BackendUnavailable(
            f"Redis at {where} refused us: {exc}; this Redis user's ACL does not allow it "
            "(an agent writes only context, signals, locks and its own results: "
            "docs/security.md)"
        )
    if kind == "auth":
        return BackendUnavailable(
            f"Redis at {where} refused us: {exc}; check REDIS_USERNAME and REDIS_PASSWORD"
        )
    if _wrong_type(exc):
        return InvalidInput(f"a key at {where} holds another type than cfn writes there "
                            f"({exc}); written by hand? docs/keys.md lists each key's type")
    if kind == "connection":
        return BackendUnavailable(
            f"cannot reach Redis at {where}: {exc}; start it, or point REDIS_URL "
            "(or REDIS_FALLBACK_1) at a running server"
        )
    return BackendUnavailable(f"Redis at {where} refused the command: {exc}")
