"""The provider relay: a strict or permissive sandbox has no network, only a road to its
provider (docs/security.md#sandbox-modes).

Host side (`HostRelay`, one per attempt, run by the supervisor): a unix socket in a
private 0700 directory; each connection to it is forwarded to the provider's host:port,
and nowhere else. The socket is bound into the sandbox at SOCKET_INSIDE.

Inside the sandbox (`python relay.py --listen 127.0.0.1:PORT --socket PATH -- ARGV...`): a
TCP listener on the sandbox's own loopback is bound, a child forwards each of its
connections to the socket, and ARGV is exec'd: the agent stays the sandbox's main process,
and the relay dies with it. Bytes pass untouched, so TLS runs end to end between the agent
and its provider (a hostname keeps validating). The host side connects directly, never
through HTTP(S)_PROXY.

This module imports nothing of cfn at its top: containers run it as a mounted file, so an
agent image built before it still has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "https://api.anthropic.com"
DIRECTORY_INSIDE = "/run/cfn-provider"
SOCKET_INSIDE = f"{DIRECTORY_INSIDE}/provider.sock"
SCRIPT_INSIDE = f"{DIRECTORY_INSIDE}/relay.py"
# ports below 1024 need a capability the sandbox does not have: 443 is served on 10443
LOW_PORT_SHIFT = 10000
# variables that would send the agent to a proxy it cannot reach from the sandbox
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
              "all_proxy")
CONNECT_TIMEOUT_S = 30.0
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Plan:
    """How an agent reaches its provider through the relay."""

    target: tuple[str, int]  # where the host side connects
    port: int  # where the agent connects, on the sandbox's 127.0.0.1
    base_url: str  # ANTHROPIC_BASE_URL inside the sandbox
    hostname: str | None  # mapped to 127.0.0.1 by the sandbox's /etc/hosts


def plan(base_url: str | None) -> Plan:
    """The relay for a provider URL (default Anthropic's API). A loopback address keeps its
    port (the sandbox has a loopback of its own); a hostname is mapped to 127.0.0.1 and
    keeps its name, so TLS still validates; a port below 1024 moves up by LOW_PORT_SHIFT."""
    import ipaddress
    from urllib.parse import urlsplit

    url = urlsplit(base_url or DEFAULT_URL)
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        port = -1
    if url.scheme not in ("http", "https") or not url.hostname or port < 1:
        from cfn.errors import InvalidInput

        raise InvalidInput(f"provider URL {url.scheme}://{url.hostname or ''} cannot be "
                           "relayed into a sandbox: it needs http(s)://host[:port]")
    host = url.hostname
    try:
        ipaddress.ip_address(host)
        hostname, shown = None, "127.0.0.1"  # any address: the relay is on 127.0.0.1
    except ValueError:
        hostname, shown = host, host
    inside = port if port >= 1024 else port + LOW_PORT_SHIFT
    rewritten = url._replace(netloc=f"{shown}:{inside}").geturl()
    return Plan((host, port), inside, rewritten, hostname)


def hosts_file(hostname: str) -> str:
    """/etc/hosts of a sandbox whose provider is `hostname`: IPv4 only, since the relay
    listens on 127.0.0.1 alone."""
    names = " ".join(dict.fromkeys(("localhost", hostname)))
    return f"127.0.0.1\t{names}\n"


# --- the host side --------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (a half-closed connection stays usable)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _join(reader, writer, connect) -> None:
    """Forward one connection to what `connect` opens; close both ends after."""
    try:
        far_reader, far_writer = await asyncio.wait_for(connect(), CONNECT_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError):
        writer.close()
        return
    try:
        await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
    finally:
        for end in (writer, far_writer):
            end.close()


class HostRelay:
    """The supervisor's end: a unix socket that leads to the provider and nowhere else."""

    def __init__(self, relay_plan: Plan):
        self.plan = relay_plan
        self.directory = Path(tempfile.mkdtemp(prefix="cfn-relay-"))  # 0700
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[asyncio.Task] = set()

    @property
    def socket(self) -> Path:
        return self.directory / "provider.sock"

    @property
    def hosts(self) -> Path:
        return self.directory / "hosts"

    @classmethod
    async def open(cls, relay_plan: Plan) -> HostRelay:
        relay = cls(relay_plan)
        try:
            if relay_plan.hostname:
                relay.hosts.write_text(hosts_file(relay_plan.hostname))
                relay.hosts.chmod(0o644)
            relay.server = await asyncio.start_unix_server(relay._serve, path=str(relay.socket))
            # a container's user is not ours: the 0700 directory keeps others out here
            relay.socket.chmod(0o666)
        except BaseException:
            await relay.close()
            raise
        return relay

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            await _join(reader, writer, lambda: asyncio.open_connection(*self.plan.target))
        except asyncio.CancelledError:  # the attempt ended (`close`): not an error to log
            writer.close()
        finally:
            self.connections.discard(task)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        shutil.rmtree(self.directory, ignore_errors=True)

    def mounts(self, script: bool) -> dict[str, str]:
        """What the sandbox gets bound read-only: the socket, the hosts file when the
        provider has a name, and (for containers) this module to run."""
        found = {str(self.socket): SOCKET_INSIDE}
        if self.plan.hostname:
            found[str(self.hosts)] = "/etc/hosts"
        if script:
            found[str(Path(__file__).resolve())] = SCRIPT_INSIDE
        return found


def preview_mounts(relay_plan: Plan) -> dict[str, str]:
    """`HostRelay.mounts` as a dry run shows them: the relay's files exist per attempt."""
    found = {"<the relay's socket, per attempt>": SOCKET_INSIDE}
    if relay_plan.hostname:
        found["<the relay's hosts file, per attempt>"] = "/etc/hosts"
    return found


def wrap(argv: list[str], relay_plan: Plan, python: list[str]) -> list[str]:
    """`argv` started behind the relay inside the sandbox."""
    return [*python, "--listen", f"127.0.0.1:{relay_plan.port}", "--socket", SOCKET_INSIDE,
            "--", *argv]


def fenced_env(env: dict[str, str], relay_plan: Plan | None) -> dict[str, str]:
    """The agent's environment in a sandbox without network: no proxies (out of reach in
    there), /tmp as its scratch space, and its provider's URL as the relay serves it."""
    fenced = {k: v for k, v in env.items() if k not in PROXY_VARS}
    fenced["TMPDIR"] = "/tmp"
    if relay_plan is not None:
        fenced["ANTHROPIC_BASE_URL"] = relay_plan.base_url
    return fenced


# --- inside the sandbox ---------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the agent ends, even if the sandbox lingered."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before the line above
        os._exit(0)


async def _serve_inside(listener: socket.socket, socket_path: str) -> None:
    server = await asyncio.start_server(
        lambda r, w: _join(r, w, lambda: asyncio.open_unix_connection(socket_path)),
        sock=listener)
    async with server:
        await server.serve_forever()


def _parse(argv: list[str]) -> tuple[tuple[str, int], str, list[str]]:
    import argparse

    if "--" not in argv:
        raise SystemExit("cfn relay: give the agent's command after --")
    cut = argv.index("--")
    parser = argparse.ArgumentParser(prog="cfn relay")
    parser.add_argument("--listen", required=True, help="HOST:PORT inside the sandbox")
    parser.add_argument("--socket", required=True, help="the host relay's unix socket")
    args = parser.parse_args(argv[:cut])
    host, _, port = args.listen.rpartition(":")
    if not argv[cut + 1:]:
        raise SystemExit("cfn relay: the agent's command is empty")
    return (host, int(port)), args.socket, argv[cut + 1:]


def main(argv: list[str] | None = None) -> None:
    listen, socket_path, command = _parse(sys.argv[1:] if argv is None else argv)
    # bound before the agent starts: its first request finds the relay listening
    listener = socket.create_server(listen)
    parent = os.getpid()
    if os.fork() == 0:
        try:
            _die_with_parent(parent)
            asyncio.run(_serve_inside(listener, socket_path))
        finally:
            os._exit(0)
    listener.close()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"cfn relay: cannot run {command[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main()
