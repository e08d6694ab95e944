"""A small Redis client for the hot commands: hiredis frames and parses, this moves bytes.

redis-py's import alone costs more than `cfn signal send` may take as a whole process
(docs/performance.md), so the hot commands (cfn.cli.fast) run the same coordination
functions on this client instead. It offers only the part of redis-py's API those
functions use, with redis-py's replies (as with decode_responses=True) and its error
messages, so cfn.backend.unavailable says the same whichever client failed. unix:// and
redis:// URLs only (no TLS), no retries: a command is sent once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from cfn import outage

# The error codes redis-py takes off the front of an error reply's message, and what each
# is to cfn.backend.unavailable: redis-py's ConnectionError ("connection"),
# AuthenticationError ("auth"), NoPermissionError ("permission"), else a refused command.
_CODES = {"NOAUTH": "auth", "WRONGPASS": "auth", "NOPERM": "permission",
          "LOADING": "connection", "ERR": "command", "OOM": "command",
          "EXECABORT": "command", "NOSCRIPT": "command", "READONLY": "command",
          "ASK": "command", "TRYAGAIN": "command", "MOVED": "command",
          "CLUSTERDOWN": "command", "CROSSSLOT": "command", "MASTERDOWN": "command"}
_ERR_KINDS = {"max number of clients reached": "connection", "invalid password": "auth"}
# Replies of a cluster node that did not run the command: its slot is served elsewhere, or
# by nobody now; in a MULTI, such a reply to a queued command aborts the whole transaction
_NOT_RUN = ("MOVED", "ASK", "CLUSTERDOWN")
_CLOSED = "Connection closed by server."  # redis-py's words for it


class RedisError(Exception):
    """An error reply, or a failure talking to Redis. `kind` is "connection", "auth",
    "permission" or "command"; `code` the reply's error code (e.g. EXECABORT), if any."""

    def __init__(self, message: str, kind: str = "command", code: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.code = code


def reply_error(reply: str) -> RedisError:
    """An error reply as redis-py words and classifies it (its parse_error)."""
    code, _, rest = reply.partition(" ")
    if code not in _CODES:
        return RedisError(reply)
    kind = _ERR_KINDS.get(rest, "command") if code == "ERR" else _CODES[code]
    return RedisError(rest, kind, code)


def _annotated(error: RedisError, number: int, args: tuple) -> RedisError:
    """A pipelined command's error, naming the command as redis-py does."""
    import textwrap

    command = textwrap.shorten(" ".join(map(str, args)), width=100, placeholder="...",
                               break_long_words=True)
    message = f"Command # {number} ({command}) of pipeline caused error: {error}"
    return RedisError(message, error.kind, error.code)


def _refused(reply: object) -> bool:
    """True for an error reply that redis-py raises as a ResponseError (not a connection or
    authentication error)."""
    return isinstance(reply, RedisError) and reply.kind in ("command", "permission")


def _not_run(reply: object) -> bool:
    return isinstance(reply, RedisError) and reply.code in _NOT_RUN


def _ok(reply: object) -> object:
    return reply == "OK"


def _popped(reply: object) -> object:
    return tuple(reply) if reply else None


class Commands:
    """The commands the hot coordination functions use, as redis-py spells them."""

    def execute_command(self, *args: object, callback: Callable | None = None) -> object:
        raise NotImplementedError

    def get(self, name: str) -> object:
        return self.execute_command("GET", name)

    def set(self, name: str, value: str, ex: int | None = None) -> object:
        extra = ("EX", ex) if ex is not None else ()
        return self.execute_command("SET", name, value, *extra, callback=_ok)

    def lpop(self, name: str) -> object:
        return self.execute_command("LPOP", name)

    def blpop(self, keys: list[str], timeout: float = 0) -> object:
        return self.execute_command("BLPOP", *keys, timeout, callback=_popped)

    def rpush(self, name: str, *values: str) -> object:
        return self.execute_command("RPUSH", name, *values)

    def expire(self, name: str, time: int) -> object:
        return self.execute_command("EXPIRE", name, time, callback=bool)

    def xadd(self, name: str, fields: dict[str, str], id: str = "*",
             maxlen: int | None = None, approximate: bool = True) -> object:
        trim = () if maxlen is None else ("MAXLEN", *(("~",) if approximate else ()), maxlen)
        pairs = [part for pair in fields.items() for part in pair]
        return self.execute_command("XADD", name, *trim, id, *pairs)


def _busy(reply: object) -> bool:
    return isinstance(reply, RedisError) and reply.kind == "connection"


class Client(Commands):
    """One connection. `sent` turns True when a command (not the handshake) went out:
    from then on a failure must not be retried elsewhere, the command may have run; unless
    the first commands' replies said a cluster node ran none of them (MOVED, ASK,
    CLUSTERDOWN). `cluster`: the handshake found a Redis Cluster node."""

    def __init__(self, dial: Callable[[], socket.socket], handshake: list[tuple],
                 reconnect_window: float = 0.0):
        self._dial, self._handshake = dial, handshake
        self.reconnect_window = reconnect_window
        self.sent = False
        self.cluster = False
        self._broken = False

    @classmethod
    def connect(cls, url: str, *, username: str | None, password: str | None,
                connect_timeout: float, socket_timeout: float,
                reconnect_window: float = 0.0) -> Client:
        """A client on `url`, authenticated, on its database, answering PING. Credentials
        in the URL win over `username` and `password` (as in redis-py's from_url). A
        connection lost later is made again for up to `reconnect_window` seconds (outside
        waits, which retry on their own: cfn.outage). ValueError for a URL this client does
        not take; RedisError if Redis does not answer or refuses us."""
        where, db, url_user, url_password = parse_url(url)
        username, password = url_user or username, url_password or password
        handshake: list[tuple] = []
        if username or password:
            handshake.append(("AUTH", username, password or "") if username
                             else ("AUTH", password))
        if db:
            handshake.append(("SELECT", db))
        # answers as PING does, and says the server's mode (no version: RESP2 stays)
        handshake.append(("HELLO",))

        def dial() -> socket.socket:
            sock = _open(where, connect_timeout)
            sock.settimeout(socket_timeout)
            return sock

        client = cls(dial, handshake, reconnect_window)
        hello = client._open()
        client.cluster = dict(zip(hello[::2], hello[1::2], strict=True)).get("mode") == "cluster"
        return client

    def _open(self) -> object:
        """A new connection, through the handshake; HELLO's reply."""
        self._broken = False
        try:
            self._sock = self._dial()
        except OSError as exc:
            self._broken = True
            raise RedisError(f"Error connecting to Redis: {exc}", "connection") from None
        self._reader = hiredis.Reader(encoding="utf-8", replyError=reply_error)
        try:
            replies = self._call(self._handshake, sends=False)
            for reply in replies:
                if isinstance(reply, RedisError):
                    raise reply
        except BaseException:
            self.close()
            self._broken = True
            raise
        return replies[-1]

    def execute_command(self, *args: object, callback: Callable | None = None) -> object:
        (reply,) = self._riding([args])
        if isinstance(reply, RedisError):
            raise reply
        return callback(reply) if callback else reply

    def _riding(self, commands: list[tuple]) -> list[object]:
        """`_call`, on a new connection when one drops, for up to the reconnect window:
        every command the hot path sends is safe to repeat (signals and appends carry IDs,
        a taken signal is acknowledged). Inside a wait, the wait retries (cfn.outage)."""
        first_failure, failures = None, 0
        while True:
            try:
                if self._broken:
                    self._open()
                replies = self._call(commands)
                if len(replies) == 1 and _busy(replies[0]):
                    raise replies[0]  # Redis is loading its data after a restart
                return replies
            except RedisError as exc:
                # a password refused on a reconnect: a restarted Redis lost an agent's user
                # until its supervisor defines it again (seconds)
                if exc.kind != "connection" and not (exc.kind == "auth" and failures):
                    raise
                self._broken = True  # whoever tries next dials again
                now = time.monotonic()
                first_failure, failures = first_failure or now, failures + 1
                outage.failed()
                if outage.waiting.get() or now - first_failure >= self.reconnect_window:
                    raise
                time.sleep(outage.backoff(failures))

    def pipeline(self, transaction: bool = True) -> Pipeline:
        if not transaction:
            raise ValueError("the small client pipelines only transactions")
        return Pipeline(self)

    def close(self) -> None:
        self._sock.close()

    def _call(self, commands: list[tuple], *, sends: bool = True) -> list[object]:
        """Send `commands` at once and read one reply each (an error reply as a RedisError);
        `sends`: they count as sent (the handshake's do not)."""
        packed = b"".join(hiredis.pack_command(args) for args in commands)
        first = sends and not self.sent
        self.sent = self.sent or sends
        try:
            self._sock.sendall(packed)
            replies = [self._read() for _ in commands]
        except TimeoutError:
            raise RedisError("Timeout reading from socket", "connection") from None
        except OSError as exc:
            raise RedisError(f"Error while talking to Redis: {exc}", "connection") from None
        if first and any(map(_not_run, replies)):
            self.sent = False  # nothing ran: the full path may serve it (cfn.cli.fast)
        return replies

    def _read(self) -> object:
        while (reply := self._reader.gets()) is False:
            data = self._sock.recv(65536)
            if not data:
                raise RedisError(_CLOSED, "connection")
            self._reader.feed(data)
        return reply


class Pipeline(Commands):
    """Commands queued and run in one MULTI/EXEC transaction, as redis-py's pipeline."""

    def __init__(self, client: Client):
        self._client = client
        self._queued: list[tuple[tuple, Callable | None]] = []

    def execute_command(self, *args: object, callback: Callable | None = None) -> Pipeline:
        self._queued.append((args, callback))
        return self

    def execute(self) -> list[object]:
        """Run the queued commands; their replies, or the first error as redis-py raises
        it (a queued command's error before EXEC's)."""
        queued, self._queued = self._queued, []
        replies = self._client._riding([("MULTI",), *(args for args, _ in queued), ("EXEC",)])
        *acks, result = replies[1:]
        errors = []
        for number, (ack, (args, _)) in enumerate(zip(acks, queued, strict=True), 1):
            if isinstance(ack, RedisError):
                if not _refused(ack):
                    raise ack
                errors.append(_annotated(ack, number, args))
        if isinstance(result, RedisError):
            raise errors[0] if errors and result.code == "EXECABORT" else result
        for number, (reply, (args, _)) in enumerate(zip(result, queued, strict=True), 1):
            if _refused(reply):
                raise _annotated(reply, number, args)
        return [callback(reply) if callback else reply
                for reply, (_, callback) in zip(result, queued, strict=True)]


def parse_url(url: str) -> tuple[str | tuple[str, int], int, str | None, str | None]:
    """(socket path or (host, port), db, username, password) of a unix:// or redis:// URL,
    read as redis-py's parse_url reads it; ValueError for anything else (rediss://, or
    query options other than db)."""
    parts = urlsplit(url)
    options = parse_qs(parts.query)
    if parts.scheme not in ("unix", "redis") or set(options) - {"db"}:
        raise ValueError(f"not a URL for the small client: {parts.scheme}://")
    db = int(options["db"][0]) if options else None
    if parts.scheme == "unix":
        where: str | tuple[str, int] = unquote(parts.path)
    else:
        where = (unquote(parts.hostname or "localhost"), parts.port or 6379)
        if db is None and parts.path:
            db = _number(unquote(parts.path).replace("/", ""))  # none if it is not one
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return where, db or 0, user, password


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _open(where: str | tuple[str, int], timeout: float) -> socket.socket:
    """A connected socket (OSError if nothing answers)."""
    if isinstance(where, tuple):
        sock = socket.create_connection(where, timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(where)
    except BaseException:
        sock.close()
        raise
    return sock
