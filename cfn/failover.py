"""Failover between the primary Redis and REDIS_FALLBACK_1 that strands nothing.

Where a task's keys live: on the *home*, one of the two servers at any time, never split.
The two are a dedicated pair. Each keeps a hash `cfn:failover` with its own `id`, its
`peer`'s id and the home record it knows (`epoch`, `home`: the home's id). The home is the
server named by the highest record (epoch, then id) among the servers that answer; with no
record anywhere, the primary.

- Every new connection finds the home afresh (`FailoverConnection`), so a client whose
  connection drops (a blocked waiter, a supervisor) follows the home as it reconnects.
- When the home cannot be reached (its connection refused or timed out; a server that
  answers with an error is not down), a trusted process (never an agent: agents only
  follow) promotes the other, writing a record one epoch higher on every server it reaches.
- When a server that is not the home answers again (the old primary, back from its
  restart), a trusted process drains it: writes the current record there, closes cfn's
  connections to it (they reconnect to the home) and moves cfn's keys into the home,
  merging with what is there: a signal queued there goes ahead of newer ones, a taking list
  keeps its waiter, a stream entry is appended unless the home has its append ID or a newer
  entry of the same agent. A key that cannot be moved stays, logged; connecting never fails
  because of a drain.
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
from cfn.errors import InvalidInput

KEY = "cfn:failover"
DRAINING = "cfn:draining"
CLIENT_NAME = "cfn"  # names cfn's connections, which a drain closes on a server left behind
# cfn's keys carry a {task} hash tag (cfn.keys); other applications' keys are left alone
PREFIXES = (b"context:{", b"coord:{", b"agent:{", b"lock:{", b"cfn:provider:")
log = logging.getLogger(__name__)

# KEYS[1] cfn:failover; ARGV[1] epoch, ARGV[2] the home's id. Keeps the higher record.
_RECORD = Lua("""
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '-1') or -1
local home = redis.call('HGET', KEYS[1], 'home') or ''
local new = tonumber(ARGV[1])
if epoch < new or (epoch == new and home < ARGV[2]) then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'home', ARGV[2])
end
return 1
""")

# KEYS[1] a key moved from the other server, KEYS[2] its guard (this move done once);
# ARGV[1] its type, ARGV[2] its TTL ms (0: none), ARGV[3] its DUMP, then its contents.
# Restores the key where the home has none; else merges: older list items go ahead, sorted
# set members and hash fields the home lacks are added, a fence keeps the higher value,
# stream entries are appended (ARGV: entry ID, append ID or '', field count, fields); a
# string the home has is the newer one. An appended entry's append ID marks it (1 hour).
_MERGE = Lua("""
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', 3600) then return 0 end
local key, kind = KEYS[1], ARGV[1]
local fresh = redis.call('EXISTS', key) == 0
if fresh then redis.call('RESTORE', key, tonumber(ARGV[2]), ARGV[3]) end
if kind == 'stream' then
  local i = 4
  while i <= #ARGV do
    local id, append, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    if not fresh then
      local fields = {}
      for j = i + 3, i + 2 + n do fields[#fields + 1] = ARGV[j] end
      id = redis.call('XADD', key, '*', unpack(fields))
    end
    if append ~= '' then redis.call('SET', key .. ':sent:' .. append, id, 'NX', 'EX', 3600) end
    i = i + 3 + n
  end
elseif fresh then return 1
elseif kind == 'list' then
  for i = #ARGV, 4, -1 do redis.call('LPUSH', key, ARGV[i]) end
elseif kind == 'zset' then
  for i = 4, #ARGV, 2 do redis.call('ZADD', key, 'NX', ARGV[i + 1], ARGV[i]) end
elseif kind == 'hash' then
  for i = 4, #ARGV, 2 do redis.call('HSETNX', key, ARGV[i], ARGV[i + 1]) end
elseif kind == 'string' and string.sub(key, -6) == ':fence' then
  local old, mine = tonumber(ARGV[4]) or 0, tonumber(redis.call('GET', key) or '0') or 0
  if old > mine then redis.call('SET', key, ARGV[4]) end
end
return 1
""")

# KEYS[1] a moved key; ARGV[1] its DUMP when moved. Deletes it unless written since.
_FORGET = Lua("""
if redis.call('DUMP', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


class ClusterNode(Exception):  # noqa: N818 - a finding, not a failure
    """The server is a Redis Cluster node: cfn follows the cluster's own failover."""

    def __init__(self, url: str):
        super().__init__(url)
        self.url = url


@dataclass
class Server:
    """What one server answered: whether it is usable, its ids and its home record."""

    url: str
    client: redis.Redis
    up: bool  # answered; False: answered with an error (busy, loading, a refused password)
    id: str | None = None
    peer: str | None = None
    record: tuple[int, str] | None = None


class Failover:
    """Finds the home among the target's URLs (promoting and draining when trusted)."""

    def __init__(self, target):
        self.target = target
        self.trusted = not target.agent
        self.url, self.epoch = target.urls[0], 0  # the home as last found

    def home(self) -> str:
        """The home's URL; raises ConnectionRefusedError while no server will do."""
        probes = {url: self._probe(url) for url in self.target.urls}
        try:
            self.url = self._choose(probes)
            return self.url
        finally:
            for server in probes.values():
                if server:
                    server.client.close()

    def _choose(self, probes: dict[str, Server | None]) -> str:
        up = [s for s in probes.values() if s and s.up]
        if not up:
            raise ConnectionRefusedError("no Redis will serve: " + ", ".join(
                mask_url(url) for url in self.target.urls))
        _check_pair(up)
        record = max((s.record for s in up if s.record), default=None)
        if record is None:  # no record yet: the primary is home
            record = (0, up[0].id or "") if up[0].url == self.target.urls[0] else (-1, "")
        home = next((s for s in up if s.id == record[1]), None)
        if home is None:
            home, record = self._promote(probes, up, record)
        if self.trusted:
            self._settle(up, home, record)
        self.epoch = record[0]
        return home.url

    def _promote(self, probes, up: list[Server], record) -> tuple[Server, tuple[int, str]]:
        """The first server that answers, one epoch up, when the home cannot be reached."""
        unreachable = [url for url, server in probes.items() if server is None]
        if not self.trusted or not unreachable:  # agents wait; a busy home is not down
            raise ConnectionRefusedError(
                "the Redis holding cfn's keys does not serve now; a trusted cfn process "
                "fails over when it cannot be reached")
        home = up[0]
        record = (max(record[0], 0) + 1, home.id or "")
        log.warning("cfn: Redis %s cannot be reached; %s takes over (epoch %d)",
                    ", ".join(mask_url(url) for url in unreachable), mask_url(home.url),
                    record[0])
        return home, record

    def _settle(self, up: list[Server], home: Server, record) -> None:
        """Every server that answers learns the record (and its peer); the others drain."""
        for server in up:
            _RECORD(server.client, [KEY], list(record))
            peers = [s.id for s in up if s is not server and s.id]
            if peers and server.peer is None:
                server.client.hset(KEY, "peer", peers[0])
        for server in up:
            if server is not home:
                drain(server, home, self.open)

    def _probe(self, url: str) -> Server | None:
        """The server at `url`; None if it cannot be reached at all."""
        client = self.open(url)
        try:
            pipe = client.pipeline(transaction=False)
            pipe.execute_command("HELLO")
            pipe.hgetall(KEY)
            hello, fields = pipe.execute(raise_on_error=False)
        except redis.exceptions.AuthenticationError:  # it answered: refused, not down
            return Server(url, client, up=False)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            client.close()
            return None
        if isinstance(hello, list | dict) and _mode(hello) == "cluster":
            client.close()
            raise ClusterNode(url)
        if isinstance(fields, Exception):  # busy, loading, NOPERM (an agent on Redis 6.2)
            return Server(url, client, up=not isinstance(hello, Exception) and
                          isinstance(fields, redis.exceptions.NoPermissionError))
        if self.trusted and "id" not in fields:
            client.hsetnx(KEY, "id", secrets.token_hex(8))
            fields = client.hgetall(KEY)
        record = (int(fields["epoch"]), fields["home"]) if "epoch" in fields else None
        return Server(url, client, True, fields.get("id"), fields.get("peer"), record)

    def open(self, url: str, *, decode: bool = True) -> redis.Redis:
        """A client on `url` that tries once: a server that does not answer is down."""
        timeout = self.target.connect_timeout
        return redis.Redis.from_url(
            url, username=self.target.username, password=self.target.password,
            socket_connect_timeout=timeout, socket_timeout=timeout + 5,
            retry=Retry(NoBackoff(), 0), decode_responses=decode, driver_info=None)


def _mode(hello: list | dict) -> str | None:
    from cfn.cluster import hello_fields

    return hello_fields(hello).get("mode")


def _check_pair(up: list[Server]) -> None:
    """The two servers serve each other only: a server paired with a third, or holding a
    home record naming neither, belongs to another deployment (it would be drained)."""
    ours = {s.id for s in up} | {s.peer for s in up}
    for server in up:
        others = [s.id for s in up if s is not server]
        if server.peer and others and others[0] and server.peer != others[0] or \
                server.record and server.record[1] not in ours:
            raise InvalidInput(
                f"Redis {mask_url(server.url)} is already the primary or fallback of another "
                "pair of servers; a fallback serves one primary (and one cfn deployment): "
                "give REDIS_FALLBACK_1 a Redis of its own")


def drain(stale: Server, home: Server, open_) -> None:
    """Move cfn's keys from `stale` (a server that is not the home) into the home. Never
    raises: what cannot be moved stays, and the next drain tries again."""
    source, target = open_(stale.url, decode=False), open_(home.url, decode=False)
    try:
        _close_clients(source)
        if not source.set(DRAINING, "1", nx=True, px=600_000):
            return  # another process is draining it
        try:
            moved = _move_all(source, target, stale.id or "")
        finally:
            source.delete(DRAINING)
        if moved:
            log.warning("cfn: moved %d keys from %s to %s, where they live now", moved,
                        mask_url(stale.url), mask_url(home.url))
    except redis.exceptions.RedisError as exc:
        log.warning("cfn: could not move keys from %s (%s); trying again on the next "
                    "connection", mask_url(stale.url), exc)
    finally:
        source.close()
        target.close()


def _move_all(source: redis.Redis, target: redis.Redis, source_id: str) -> int:
    keys = [k for k in source.scan_iter(count=1000) if k.startswith(PREFIXES)]
    moved = 0
    for key in (k for k in keys if b":sent:" not in k):  # markers go with their streams
        try:
            moved += _move(source, target, key, source_id)
        except redis.exceptions.ResponseError as exc:
            log.warning("cfn: left %s behind: %s", key.decode(errors="replace"), exc)
    for marker in (k for k in keys if b":sent:" in k):  # once what they mark has gone
        if not source.exists(marker.rsplit(b":sent:", 1)[0]):
            source.delete(marker)
    return moved


def _close_clients(server: redis.Redis) -> None:
    """Close cfn's connections to a server left behind: they reconnect to the home."""
    me = server.client_id()
    for client in server.client_list(_type="normal"):
        if client.get("name") in (CLIENT_NAME, CLIENT_NAME.encode()) and \
                int(client["id"]) != me:
            server.client_kill_filter(_id=client["id"])


def _move(source: redis.Redis, target: redis.Redis, key: bytes, source_id: str) -> int:
    kind, ttl, dump = source.type(key).decode(), source.pttl(key), source.dump(key)
    if dump is None:
        return 0  # expired meanwhile
    guard = b"cfn:drained:" + hashlib.sha1(source_id.encode() + key + dump).hexdigest().encode()
    contents = _stream(source, target, key) if kind == "stream" else _contents(source, key, kind)
    _MERGE(target, [key, guard], [kind, max(ttl, 0), dump, *contents])
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
    if kind == "string":
        return [r.get(key)]
    return []


def _stream(source: redis.Redis, target: redis.Redis, key: bytes) -> list:
    """The entries of a stream to move, with their append IDs, less those the home has: the
    same append, or any entry of the same agent (the home's is newer: the old server's
    entries predate the failover)."""
    appended = {}
    for marker in source.scan_iter(key + b":sent:*", 1000):
        if source.type(marker) == b"string":
            appended[source.get(marker)] = marker.rsplit(b":sent:", 1)[1]
    home_agents = {fields.get(b"agent") for _, fields in target.xrange(key)} - {None}
    entries = []
    for entry_id, fields in source.xrange(key):
        append = appended.get(entry_id, b"")
        if fields.get(b"agent") in home_agents or \
                append and target.exists(key + b":sent:" + append):
            continue
        entries += [entry_id, append, len(fields) * 2,
                    *(x for pair in fields.items() for x in pair)]
    return entries


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
        return self.path or mask_url(self.failover.url)


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
