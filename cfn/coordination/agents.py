"""The Redis side of running agents: claims, heartbeats, provider cooldowns, per-agent ACL
users, and the record a finished agent leaves.

An agent ID is claimed with SET NX on its heartbeat key before anything starts, so two
spawners can never both launch it; the supervisor then keeps that key alive.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfn import defaults, keys
from cfn.coordination import completion, results, streams

if TYPE_CHECKING:
    import redis


def claim(r: redis.Redis, task_id: str, agent_id: str, spawner_pid: int) -> bool:
    """Reserve the agent ID until its supervisor's first heartbeat; False if it is taken."""
    beat = json.dumps({"claimed_by": spawner_pid})
    return bool(r.set(keys.heartbeat(task_id, agent_id), beat, nx=True,
                      ex=int(defaults.STARTUP_GRACE_S)))


def beat(r: redis.Redis, task_id: str, agent_id: str, state: dict) -> None:
    """Refresh the heartbeat: the supervisor is alive while the key exists."""
    r.set(keys.heartbeat(task_id, agent_id), json.dumps(state), ex=defaults.HEARTBEAT_TTL_S)


def beat_all(r: redis.Redis, beats: list[tuple[str, str, dict]]) -> None:
    """Refresh many heartbeats, (task, agent, state) each, in one round trip."""
    pipe = r.pipeline(transaction=False)
    for task_id, agent_id, state in beats:
        beat(pipe, task_id, agent_id, state)
    pipe.execute()


def heartbeat(r: redis.Redis, task_id: str, agent_id: str) -> dict | None:
    """The supervisor's last heartbeat (or the spawner's claim), None when it is gone."""
    raw = r.get(keys.heartbeat(task_id, agent_id))
    return json.loads(raw) if raw else None


def unclaim(r: redis.Redis, task_id: str, agent_id: str) -> None:
    r.delete(keys.heartbeat(task_id, agent_id))


def cool_down(r: redis.Redis, provider: str) -> None:
    """Mark a provider as failing (rate limit, overload, 5xx) for everyone, for a while."""
    r.set(keys.provider_cooldown(provider), str(time.time()), ex=defaults.PROVIDER_COOLDOWN_S)


def cooling(r: redis.Redis, providers: tuple[str, ...]) -> list[str]:
    """Those of `providers` in cooldown."""
    return [p for p in providers if r.exists(keys.provider_cooldown(p))]


def finish(r: redis.Redis, task_id: str, agent_id: str, *, record_id: str, status: str,
           payload: str, phase: str | None, report: dict | None, ttl: int,
           max_bytes: int) -> None:
    """Write a finished run's report (unless the agent reported itself: `report` None), then
    its completion record: a reader of the completion finds the report there. Both carry
    `record_id` (unique to the run, also across projects sharing this Redis), so writing
    them again (a retry, a supervisor recording it once more) adds nothing."""
    if report is not None:
        fields = results.report_fields(agent_id, max_bytes=max_bytes, **report)
        streams.append(r, keys.results(task_id), fields, ttl, append_id=record_id)
    fields = completion.completion_fields(agent_id, status=status, payload=payload,
                                          max_bytes=max_bytes)
    streams.append(r, keys.completion(task_id, phase), fields, ttl, append_id=record_id)


@dataclass(frozen=True)
class RedisUser:
    username: str
    password: str


def create_user(r: redis.Redis, task_id: str, agent_id: str) -> RedisUser:
    """An ACL user that may run ordinary commands on its task's keys only, writing only what
    an agent may write (keys.agent_patterns)."""
    user = RedisUser(f"cfn-{task_id}-{agent_id}-{secrets.token_hex(4)}", secrets.token_hex(24))
    set_user(r, task_id, user)
    return user


def set_user(r: redis.Redis, task_id: str, user: RedisUser) -> None:
    """Define the agent's user (again, after a Redis restart lost it: ACL users live in the
    server's memory)."""
    patterns = keys.agent_patterns(task_id, read_selectors=has_read_selectors(r))
    for node in _every_node(r):
        node.acl_setuser(
            user.username, enabled=True, reset=True, reset_keys=True, reset_channels=True,
            passwords=[f"+{user.password}"], keys=patterns,
            commands=["+@all", "-@dangerous", "-@admin"],
        )


_DOWN = {"fail", "fail?", "handshake", "noaddr"}  # CLUSTER NODES flags of nodes not serving


def _every_node(r: redis.Redis) -> Iterator[redis.Redis]:
    """`r`; on a Redis Cluster, a client on each node the cluster counts and sees up,
    masters and replicas: each node keeps its own ACL users, and a replica may be promoted.
    Asked of CLUSTER NODES, as redis-py's slot map leaves out a replica until it has
    replicated something."""
    from redis.cluster import ClusterNode, RedisCluster

    from cfn import failover

    if (servers := failover.servers(r)) is not None:  # the primary and the fallback
        for server in servers:
            try:
                yield server
            finally:
                server.close()
        return
    if not isinstance(r, RedisCluster):
        yield r
        return
    for address, node in r.cluster_nodes().items():
        if not node["connected"] or _DOWN & set(node["flags"].split(",")):
            continue
        known = r.get_node(node_name=address)
        host, port = address.rsplit(":", 1)
        client = r.get_redis_connection(known or ClusterNode(host, int(port)))
        try:
            yield client
        finally:
            if known is None:  # a connection of ours, not of the cluster client's
                client.close()


@functools.lru_cache(maxsize=8)  # asked once per Redis and process, not once per spawn
def lets_anyone_in(url: str) -> bool:
    """True if a client with no credentials is served at `url` (the default user is on
    with no password): then per-agent ACL users protect nothing."""
    import redis

    from cfn.config import without_credentials

    client = redis.Redis.from_url(without_credentials(url), socket_connect_timeout=2,
                                  socket_timeout=2, driver_info=None)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def has_read_selectors(r: redis.Redis) -> bool:
    """Redis 7 (and Valkey) ACLs can grant read-only key patterns (%R~); 6.2 cannot. On a
    cluster, every node must."""
    versions = [str(node.info("server").get("redis_version", "0")) for node in _every_node(r)]
    return all(int(version.split(".")[0]) >= 7 for version in versions)


def delete_user(r: redis.Redis, username: str) -> None:
    """Remove the user (its open connections are closed by Redis)."""
    for node in _every_node(r):
        node.acl_deluser(username)
