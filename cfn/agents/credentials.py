"""Per-agent credentials: a Redis ACL user limited to its task's keys, and a signed token."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import redis

from cfn import keys


@dataclass(frozen=True)
class RedisUser:
    username: str
    password: str


def create_redis_user(r: redis.Redis, task_id: str, agent_id: str) -> RedisUser:
    """An ACL user that may run ordinary commands on its task's keys only."""
    user = RedisUser(f"cfn-{task_id}-{agent_id}-{secrets.token_hex(4)}", secrets.token_hex(24))
    r.acl_setuser(
        user.username, enabled=True, reset=True, reset_keys=True, reset_channels=True,
        passwords=[f"+{user.password}"], keys=keys.task_patterns(task_id),
        commands=["+@all", "-@dangerous", "-@admin"],
    )
    return user


def delete_redis_user(r: redis.Redis, username: str) -> None:
    """Remove the user (its open connections are closed by Redis)."""
    r.acl_deluser(username)
