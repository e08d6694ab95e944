"""Failover between the primary Redis and REDIS_FALLBACK_1 that strands nothing.

Where a task's keys live: on the *home*, one of the two servers at any time, never split.
Each server keeps a hash `cfn:failover` with its own `id` and the home record it knows
(`epoch`, `home`: the home's id). The home is the server named by the highest record
(epoch, then id) among the servers that answer; with no record anywhere, the primary.

- Every new connection finds the home afresh (`FailoverConnection`), so a client whose
  connection drops (a blocked waiter, a supervisor) follows the home as it reconnects.
- When the home does not answer, a trusted process (never an agent: agents only follow)
  promotes the first server that does, writing a record one epoch higher on every server
  that answers.
- When a server that is not the home answers (the old primary, back from its restart), a
  trusted process drains it: writes the current record there, closes cfn's connections to
  it (they reconnect to the home) and moves every cfn key into the home, merging with what
  is there: a signal queued on the old server goes ahead of newer ones, a stream entry is
  appended unless the home has its append ID already, a taking list keeps its waiter.
Without replication, what the home held while it was down waits for its return, and is
moved then: docs/guarantees.md says what that promises.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, UnixDomainSocketConnection, parse_url
from redis.retry import Retry

from cfn.config import mask_url
from cfn.coordination.lua import Lua

KEY = "cfn:failover"
DRAINING = "cfn:draining"
CLIENT_NAME = "cfn"  # names cfn's connections, which a drain closes on a server left behind
PATTERNS = ("context:*", "coord:*", "agent:*", "lock:*", "cfn:provider:*")
log = logging.getLogger(__name__)

# KEYS[1] cfn:failover; ARGV[1] epoch, ARGV[2] the home's id. Keeps the higher record.
_RECORD = Lua("""
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '-1')
local home = redis.call('HGET', KEYS[1], 'home') or ''
local new = tonumber(ARGV[1])
if epoch < new or (epoch == new and home < ARGV[2]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'home', ARGV[2])
end
return 1
""")

# KEYS[1] a key moved from another server, KEYS[2] its guard (this move done once);
# ARGV[1] its type, ARGV[2] its TTL ms (0: none), ARGV[3] its DUMP, then its contents.
# Restores the key where the home has none; else merges: older list items go ahead, sorted
# set members and hash fields the home lacks are added, a fence keeps the higher value,
# stream entries are appended unless the home has their append ID (with the entry's ID,
# append ID, field count and fields in ARGV); a string the home has is the newer one.
_MERGE = Lua("""
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) then return 0 end
local key, kind = KEYS[1], ARGV[1]
local fresh = redis.call('EXISTS', key) == 0
if fresh then redis.call('RESTORE', key, tonumber(ARGV[2]), ARGV[3]) end
if kind == 'stream' then
  local i = 4
  while i <= #ARGV do
    local id, append, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    local marker = key .. ':sent:' .. append
    if not fresh and (append == '' or redis.call('EXISTS', marker) == 0) then
      id = redis.call('XADD', key, '*', unpack(ARGV, i + 3, i + 2 + n))
    end
    if append ~= '' then redis.call('SET', marker, id, 'NX', 'EX', 3600) end
    i = i + 3 + n
  end
elseif fresh then return 1
elseif kind == 'list' then
  for i = #ARGV, 4, -1 do redis.call('LPUSH', key, ARGV[i]) end
elseif kind == 'zset' then
  for i = 4, #ARGV, 2 do redis.call('ZADD', key, 'NX', ARGV[i + 1], ARGV[i]) end
elseif kind == 'hash' then
  for i = 4, #ARGV, 2 do redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) end
elseif kind == 'set' then
  for i = 4, #ARGV do redis.call('SADD', key, ARGV[i]) end
elseif kind == 'string' and string.sub(key, -6) == ':fence' then
  if tonumber(ARGV[4]) > tonumber(redis.call('GET', key) or '0') then
    redis.call('SET', key, ARGV[4])
  end
end
return 1
""")

# KEYS[1] a moved key; ARGV[1] its DUMP when moved. Deletes it unless written since.
_FORGET = Lua("""
if redis.call('DUMP', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


@dataclass
class Server:
    """What one server answered: its id and the home record it holds."""

    url: str
    client: redis.Redis
    id: str | None
    record: tuple[int, str] | None


class Failover:
    """Finds the home among the target's URLs (promoting and draining when trusted)."""

    def __init__(self, target):
        self.target = target
        self.trusted = not target.agent
        self.url, self.epoch = target.urls[0], 0  # the home as last found

    def home(self) -> str:
        """The home's URL; raises ConnectionRefusedError when no server will do."""
        servers = [s for s in map(self._probe, self.target.urls) if s is not None]
        try:
            self.url = self._choose(servers)
            return self.url
        finally:
            for server in servers:
                server.client.close()

    def _choose(self, servers: list[Server]) -> str:
        if not servers:
            raise ConnectionRefusedError("no Redis answers: " + ", ".join(
                mask_url(url) for url in self.target.urls))
        record = max((s.record for s in servers if s.record), default=None)
        if record is None:  # no record yet: the primary is home, if it answers
            primary = servers[0] if servers[0].url == self.target.urls[0] else None
            home, record = primary, (0, primary.id if primary else "")
        else:
            home = next((s for s in servers if s.id == record[1]), None)
        if home is None:
            if not self.trusted:
                raise ConnectionRefusedError(
                    "the Redis holding this task's keys does not answer; the supervisor "
                    "fails over to the other")
            home, record = servers[0], (record[0] + 1, servers[0].id or "")
            log.warning("cfn: Redis %s does not answer; %s takes over (epoch %d)",
                        ", ".join(mask_url(u) for u in self.target.urls
                                  if u not in {s.url for s in servers}),
                        mask_url(home.url), record[0])
        if self.trusted:
            for server in servers:
                _RECORD(server.client, [KEY], list(record))
            for server in servers:
                if server is not home:
                    drain(server, home)
        self.epoch = record[0]
        return home.url

    def _probe(self, url: str) -> Server | None:
        client = self.open(url)
        try:
            if self.trusted:
                client.hsetnx(KEY, "id", secrets.token_hex(8))
            fields = client.hgetall(KEY)
        except redis.exceptions.NoPermissionError:  # an agent without read selectors (6.2)
            fields = {}
        except redis.exceptions.RedisError:
            client.close()
            return None
        record = (int(fields["epoch"]), fields["home"]) if "epoch" in fields else None
        return Server(url, client, fields.get("id"), record)

    def open(self, url: str, *, decode: bool = True) -> redis.Redis:
        """A client on `url` that tries once: a server that does not answer is down."""
        timeout = self.target.connect_timeout
        return redis.Redis.from_url(
            url, username=self.target.username, password=self.target.password,
            socket_connect_timeout=timeout, socket_timeout=timeout + 5,
            retry=Retry(NoBackoff(), 0), decode_responses=decode, driver_info=None)


def drain(stale: Server, home: Server) -> None:
    """Move every cfn key of `stale` (a server that is not the home) into the home."""
    source, target = _raw(stale.client), _raw(home.client)
    if not any(next(source.scan_iter(p, 1000), None) for p in PATTERNS) or \
            not source.set(DRAINING, "1", nx=True, px=120_000):
        return  # nothing of cfn's there, or another process is draining it
    try:
        _close_clients(source)
        moved = sum(_move(source, target, key, stale.id or "")
                    for pattern in PATTERNS for key in source.scan_iter(pattern, 500)
                    if b":sent:" not in key)
        for pattern in PATTERNS:  # append markers went with their streams
            for key in source.scan_iter(pattern, 500):
                if b":sent:" in key:
                    source.delete(key)
        if moved:
            log.warning("cfn: moved %d keys from %s to %s, where they live now", moved,
                        mask_url(stale.url), mask_url(home.url))
    finally:
        source.delete(DRAINING)
        source.close()
        target.close()


def _raw(client: redis.Redis) -> redis.Redis:
    """The same server, answering bytes (DUMP's payload is not text)."""
    kwargs = dict(client.connection_pool.connection_kwargs, decode_responses=False)
    return redis.Redis(connection_pool=ConnectionPool(
        connection_class=client.connection_pool.connection_class, **kwargs))


def _close_clients(server: redis.Redis) -> None:
    """Close cfn's connections to a server left behind: they reconnect to the home."""
    me = server.client_id()
    for client in server.client_list(_type="normal"):
        if client.get("name") in (CLIENT_NAME, CLIENT_NAME.encode()) and int(client["id"]) != me:
            server.client_kill_filter(_id=client["id"])


def _move(source: redis.Redis, target: redis.Redis, key: bytes, source_id: str) -> int:
    kind, ttl, dump = source.type(key).decode(), source.pttl(key), source.dump(key)
    if dump is None:
        return 0  # expired meanwhile
    guard = b"cfn:drained:" + hashlib.sha1(source_id.encode() + key + dump).hexdigest().encode()
    _MERGE(target, [key, guard], [kind, max(ttl, 0), dump, *_contents(source, key, kind)])
    _FORGET(source, [key], [dump])
    return 1


def _contents(r: redis.Redis, key: bytes, kind: str) -> list:
    if kind == "list":
        return r.lrange(key, 0, -1)
    if kind == "zset":
        return [x for member, score in r.zrange(key, 0, -1, withscores=True)
                for x in (member, repr(score))]
    if kind == "hash":
        return [x for pair in r.hgetall(key).items() for x in pair]
    if kind == "set":
        return list(r.smembers(key))
    if kind == "string":
        return [r.get(key)]
    if kind == "stream":
        appended = {r.get(marker): marker.rsplit(b":sent:", 1)[1]
                    for marker in r.scan_iter(key + b":sent:*", 500)}
        return [x for entry_id, fields in r.xrange(key)
                for x in (entry_id, appended.get(entry_id, b""), len(fields) * 2,
                          *(y for pair in fields.items() for y in pair))]
    return []


class FailoverConnection(redis.Connection):
    """A connection that finds the home each time it (re)connects."""

    def __init__(self, *, failover: Failover, **kwargs):
        self.failover, self.path = failover, ""
        super().__init__(**kwargs)

    def _connect(self):
        url = self.failover.home()
        options = parse_url(url)
        self.username = options.get("username", self.failover.target.username)
        self.password = options.get("password", self.failover.target.password)
        self.db = options.get("db", 0)
        if "path" in options:
            self.path = options["path"]
            return UnixDomainSocketConnection._connect(self)
        self.path, self.host, self.port = "", options["host"], int(options.get("port", 6379))
        return super()._connect()

    def _host_error(self):
        return self.path or super()._host_error()


def client(target, retry: Retry) -> redis.Redis:
    """A client on whichever server is home, following it across failovers."""
    from cfn import backend

    pool = ConnectionPool(
        connection_class=FailoverConnection, failover=Failover(target),
        socket_connect_timeout=target.connect_timeout,
        socket_timeout=backend.socket_timeout(target.connect_timeout), retry=retry,
        client_name=CLIENT_NAME, decode_responses=True, driver_info=None)
    return redis.Redis(connection_pool=pool)


def _of(r) -> Failover | None:
    pool = getattr(r, "connection_pool", None)
    return pool.connection_kwargs.get("failover") if pool is not None else None


def epoch(r) -> int:
    """The failover epoch of the home `r` last reached (0 without a fallback)."""
    found = _of(r)
    return found.epoch if found else 0


def servers(r: redis.Redis) -> list[redis.Redis] | None:
    """A client on each server of `r`'s target that answers, when `r` follows a failover
    (each keeps its own ACL users); None for any other client."""
    failover = _of(r)
    if failover is None:
        return None
    found = []
    for url in failover.target.urls:
        probe = failover.open(url)
        try:
            probe.ping()
            found.append(probe)
        except redis.exceptions.RedisError:
            probe.close()
    return found
