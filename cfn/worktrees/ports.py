"""Port leases: every worktree gets a block of ports no other worktree overlaps.

Ports 10000-32759 are cut into blocks of BLOCK consecutive ports (below 1024
never; below Linux's ephemeral range, so outgoing connections do not take
them). The branch's hash picks its preferred block, as in the seed; the block
moves to the next free one when another worktree holds it or any of its ports
is already bound. Leases live in SQLite with the port as primary key, so two
worktrees can never hold one port, and stay until `cfn worktree down`.
"""

from __future__ import annotations

import hashlib
import socket

from cfn.db import immediate
from cfn.errors import NegativeOutcome

FIRST_PORT = 10_000
BLOCK = 20
BLOCKS = (32_760 - FIRST_PORT) // BLOCK  # 1138 worktrees at most


def preferred_block(branch: str) -> int:
    return int(hashlib.sha256(branch.encode()).hexdigest(), 16) % BLOCKS


def bindable(port: int) -> bool:
    """True if nothing listens on the port (on any address) right now."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, port))
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno in (97, 99):  # no IPv6 here
                    continue
                return False
    return True


def listening(port: int) -> bool:
    """True if something accepts connections on 127.0.0.1:`port` right now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def leases(db, branch: str) -> dict[str, int]:
    """The branch's current leases, service -> port."""
    return {row["service"]: row["port"] for row in db.query(
        "SELECT service, port FROM port_leases WHERE branch = ? ORDER BY port", [branch])}


def lease(db, branch: str, services: list[str]) -> dict[str, int]:
    """Ports for `services` (a stable order), keeping the branch's existing leases and
    releasing those of services it no longer has."""
    if len(services) > BLOCK:
        raise NegativeOutcome(f"{len(services)} services need ports; a worktree has {BLOCK}")
    with immediate(db):
        held = leases(db, branch)
        if set(services) <= set(held):  # stable, and bound by its own stack
            for gone in set(held) - set(services):
                db.execute("DELETE FROM port_leases WHERE branch = ? AND service = ?",
                           [branch, gone])
            return {s: held[s] for s in services}
        taken = {row["port"] for row in db.query(
            "SELECT port FROM port_leases WHERE branch != ?", [branch])}
        start, mine = preferred_block(branch), set(held.values())
        for step in range(BLOCKS):
            first = FIRST_PORT + ((start + step) % BLOCKS) * BLOCK
            ports = {service: first + index for index, service in enumerate(services)}
            if taken.isdisjoint(ports.values()) and all(
                    p in mine or bindable(p) for p in ports.values()):
                db.execute("DELETE FROM port_leases WHERE branch = ?", [branch])
                for service, port in ports.items():
                    db.execute("INSERT INTO port_leases (port, branch, service) VALUES (?, ?, ?)",
                               [port, branch, service])
                return ports
    raise NegativeOutcome("no free block of ports is left; bring some worktrees down")


def release(db, branch: str) -> None:
    db.execute("DELETE FROM port_leases WHERE branch = ?", [branch])
