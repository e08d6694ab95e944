"""Faults for the fault suite: a Redis that dies and comes back, and a proxy that loses
replies after Redis has executed the command."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

from conftest import redis_tool


class RestartableRedis:
    """A redis-server on a unix socket with AOF on, which a test can SIGKILL and restart:
    what it acknowledged survives (appendfsync always)."""

    def __init__(self, directory: Path):
        self.directory = directory
        # alone in its directory: agents get the directory, and find the restarted server's
        self.socket = directory / "socket" / "redis.sock"
        self.process: subprocess.Popen | None = None
        self.socket.parent.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_tool("redis-server"), "--port", "0", "--unixsocket", str(self.socket),
             "--unixsocketperm", "777", "--dir", str(self.directory), "--appendonly", "yes",
             "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers(self.socket):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def restart_after(self, seconds: float) -> threading.Thread:
        """Kill it now and start it again `seconds` later (in the background)."""
        self.kill()
        thread = threading.Thread(target=lambda: (time.sleep(seconds), self.start()))
        thread.start()
        return thread


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(1)
            probe.connect(str(path))
            probe.sendall(b"PING\r\n")
            return probe.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class LosingProxy:
    """A TCP proxy on loopback in front of a Redis unix socket. Armed with a command name,
    it forwards the next such command to Redis, then drops the client's connection instead
    of passing the reply on: Redis ran the command, the client never hears of it."""

    def __init__(self, redis_socket: Path):
        self.redis_socket = redis_socket
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed: bytes | None = None
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def lose_reply_to(self, command: str) -> None:
        self.armed = command.upper().encode()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(self.redis_socket))
            doomed = threading.Event()  # the armed command went up: its reply must not come
            for source, sink, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, sink, up, doomed),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool,
              doomed: threading.Event) -> None:
        try:
            while data := source.recv(1 << 16):
                if up and self.armed is not None and self.armed in data.upper():
                    self.armed = None
                    doomed.set()
                elif not up and doomed.is_set():
                    self.dropped += 1
                    break  # Redis answered; the client will never know
                sink.sendall(data)
        except OSError:
            pass
        finally:
            source.close()
            sink.close()
