"""The shape of the code base: the layering it promises and help on every command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest

from cfn.cli.app import ALIASES, COMMANDS, cli

PACKAGE = Path(__file__).resolve().parent.parent / "cfn"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_database_layer_imports_no_capability():
    for path in (PACKAGE / "db").rglob("*.py"):
        upward = {m for m in imported_modules(path)
                  if m.startswith(("cfn.coordination", "cfn.agents", "cfn.loop", "cfn.history",
                                   "cfn.project", "cfn.cli"))}
        assert not upward, f"{path.name} imports {sorted(upward)}"


SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|"
                 r"DELETE\s+FROM|CREATE\s+TABLE|PRAGMA)\b", re.I | re.S)


def test_the_cli_holds_no_sql():
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.search(node.value), f"SQL in {path.name}: {node.value[:60]!r}"


def test_redis_is_written_only_through_coordination():
    """Outside cfn/coordination, no module calls a Redis write command on a client."""
    writes = re.compile(r"\b(r|redis|client)\.(set|rpush|lpush|xadd|expire|delete|eval|evalsha|"
                        r"acl_setuser|acl_deluser|hset|incr|pipeline)\(")
    for path in PACKAGE.rglob("*.py"):
        # the connection layer (which server, its admin user, failover) writes its own keys
        if "coordination" in path.parts or path.name in ("backend.py", "embedded.py",
                                                          "failover.py"):
            continue
        hits = [line.strip() for line in path.read_text().splitlines() if writes.search(line)]
        assert not hits, f"{path.relative_to(PACKAGE)}: {hits}"


def test_library_code_never_prints():
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.parts or path.parts[-2] == "demo":  # demo agents are programs
            continue
        calls = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
        assert not calls, f"{path.relative_to(PACKAGE)} prints; log through logging instead"


def walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, name), (*path, name))


ALL = list(walk(cli))


def test_every_top_level_command_is_reachable():
    assert {path[0] for path, _ in ALL if len(path) == 1} == set(COMMANDS) - set(ALIASES)


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) or "cfn" for p, _ in ALL])
def test_every_command_and_option_has_help(path, command):
    assert (command.help or "").strip(), f"cfn {' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            assert (param.help or "").strip(), \
                f"cfn {' '.join(path)} {param.opts[0]} has no help text"
