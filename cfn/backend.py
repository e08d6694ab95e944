"""Connections to the coordination backend (Redis), with fallback and error translation.

`session(config)` yields a connected client. With no Redis URL configured it
uses the project's embedded server. If the primary is unreachable and
REDIS_FALLBACK_1 is set, the fallback is used. Every Redis failure leaves here
as BackendUnavailable (exit 4) naming the URL with its password masked.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoPermissionError,
    ResponseError,
    TimeoutError,
)
from redis.retry import Retry

from cfn import embedded
from cfn.config import Config, mask_url
from cfn.errors import BackendUnavailable


def primary_url(config: Config) -> str:
    """The configured Redis URL, or the embedded server's (started on demand)."""
    if config.redis_url:
        return str(config.redis_url)
    return embedded.ensure_running(config.home)


def _client(config: Config, url: str, block_seconds: float) -> redis.Redis:
    timeout = float(config.connect_timeout)
    return redis.Redis.from_url(
        url,
        username=config.redis_username,
        password=config.redis_password,
        socket_connect_timeout=timeout,
        # a blocking command legitimately holds the socket silent for block_seconds
        socket_timeout=timeout + block_seconds,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), int(config.retries)),
        retry_on_error=[ConnectionError, TimeoutError],
        decode_responses=True,
        # skips CLIENT SETINFO and its package-metadata lookup: 5 ms a command
        driver_info=None,
    )


def _connect(config: Config, block_seconds: float) -> tuple[redis.Redis, str]:
    url = primary_url(config)
    client = _client(config, url, block_seconds)
    try:
        client.ping()
        return client, url
    except (ConnectionError, TimeoutError) as exc:
        client.close()
        fallback = config.redis_fallback_1
        if not fallback or isinstance(exc, AuthenticationError):
            raise _unavailable(exc, url) from None
        print(
            f"cfn: primary Redis {mask_url(url)} unreachable ({exc}); "
            f"using fallback {mask_url(str(fallback))}",
            file=sys.stderr,
        )
    client = _client(config, str(fallback), block_seconds)
    try:
        client.ping()
    except (ConnectionError, TimeoutError, ResponseError) as exc:
        client.close()
        raise _unavailable(exc, str(fallback)) from None
    return client, str(fallback)


def _unavailable(exc: Exception, url: str) -> BackendUnavailable:
    where = mask_url(url)
    if isinstance(exc, NoPermissionError):
        return BackendUnavailable(
            f"Redis at {where} refused us: {exc}; this Redis user's ACL does not allow it"
        )
    if isinstance(exc, AuthenticationError) or str(exc).startswith(("NOAUTH", "WRONGPASS")):
        return BackendUnavailable(
            f"Redis at {where} refused us: {exc}; check REDIS_USERNAME and REDIS_PASSWORD"
        )
    if isinstance(exc, ResponseError):
        return BackendUnavailable(f"Redis at {where} refused the command: {exc}")
    return BackendUnavailable(
        f"cannot reach Redis at {where}: {exc}; start it, or point REDIS_URL "
        "(or REDIS_FALLBACK_1) at a running server"
    )


@contextmanager
def session(config: Config, block_seconds: float = 0.0) -> Iterator[redis.Redis]:
    """A connected client; Redis failures inside the block become BackendUnavailable."""
    client, url = _connect(config, block_seconds)
    try:
        yield client
    except (ConnectionError, TimeoutError, ResponseError) as exc:
        raise _unavailable(exc, url) from None
    finally:
        client.close()
