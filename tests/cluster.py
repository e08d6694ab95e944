"""A real Redis Cluster on loopback for tests: three masters and three replicas, each a
redis-server with `cluster-enabled yes`, joined by `redis-cli --cluster create`.

A short cluster-node-timeout (1 s) makes a killed master's replica take over in seconds.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from conftest import redis_tool

NODE_TIMEOUT_MS = 1000


@dataclass
class Node:
    port: int
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, as a crash."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.proc.poll() is None]

    def owner(self, key: str) -> Node:
        """The node serving `key`'s slot now (its master)."""
        for node in self.live():
            with contextlib.closing(node.client()) as client:
                slot = client.cluster("keyslot", key)
                for start, end, master, *_ in client.execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == master[1])
        raise AssertionError(f"no live node knows the owner of {key}")

    def role(self, node: Node) -> str:
        with contextlib.closing(node.client()) as client:
            return client.info("replication")["role"]  # master or slave

    def other_master(self, than: Node) -> Node:
        """A live master other than `than` (to connect through while `than` fails)."""
        for node in self.live():
            if node is not than and self.role(node) == "master":
                return node
        raise AssertionError("no other master")

    def wait_healthy(self, deadline_s: float = 30) -> None:
        """Until every live node says the cluster is ok with each slot on a live master (after
        a kill: once the dead master's replica took over)."""
        deadline = time.monotonic() + deadline_s
        while not all(self._healthy(n) for n in self.live()):
            assert time.monotonic() < deadline, "the cluster did not become healthy"
            time.sleep(0.05)

    def _healthy(self, node: Node) -> bool:
        live = {n.port for n in self.live()}
        try:
            with contextlib.closing(node.client()) as client:
                info = client.cluster("info")
                slots = client.execute_command("CLUSTER SLOTS")
        except redis.RedisError:
            return False
        served = sum(end - start + 1 for start, end, *_ in slots)
        return info["cluster_state"] == "ok" and served == 16384 and \
            all(master[1] in live for _, _, master, *_ in slots)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.terminate()
                node.proc.wait(timeout=10)


def free_ports(count: int) -> list[int]:
    """Free loopback ports whose cluster bus port (+10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 55535 and port not in ports and _free(port + 10000):
            ports.append(port)
    return ports


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_cluster(directory: Path, masters: int = 3) -> Cluster:
    """Masters with a replica each, on free loopback ports, created and healthy."""
    cluster = Cluster()
    try:
        for port in free_ports(masters * 2):
            cluster.nodes.append(Node(port, _start_node(directory / str(port), port)))
        for node in cluster.nodes:
            _wait_accepting(node)
        subprocess.run(
            [redis_tool("redis-cli"), "--cluster", "create",
             *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        cluster.wait_healthy()
        _wait_replicas_synced(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _start_node(directory: Path, port: int) -> subprocess.Popen:
    directory.mkdir(parents=True)
    return subprocess.Popen(
        [redis_tool("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
         "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
         # a replica's first sync starts at once, not after the default 5 s wait for others
         "--repl-diskless-sync-delay", "0",
         "--save", "", "--appendonly", "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_accepting(node: Node) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with contextlib.closing(node.client()) as client:
                client.ping()
                return
        except redis.ConnectionError:
            assert time.monotonic() < deadline, f"redis-server on {node.port} did not start"
            time.sleep(0.02)


def _wait_replicas_synced(cluster: Cluster, deadline_s: float = 30) -> None:
    """Until every replica has finished its first sync (else it could not take over)."""
    deadline = time.monotonic() + deadline_s
    for node in cluster.nodes:
        with contextlib.closing(node.client()) as client:
            while (info := client.info("replication"))["role"] == "slave" and \
                    info["master_link_status"] != "up":
                assert time.monotonic() < deadline, f"replica {node.port} never synced"
                time.sleep(0.05)
