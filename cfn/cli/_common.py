"""Helpers shared by the click commands: configuration, backend sessions, output."""

from __future__ import annotations

import json
from collections.abc import Callable

import click

from cfn import validate
from cfn.config import Config, resolve
from cfn.ids import validate_id


def config_of(ctx: click.Context) -> Config:
    """The resolved configuration, once per invocation."""
    root = ctx.find_root()
    root.obj = root.obj or {"flags": {}}
    if "config" not in root.obj:
        root.obj["config"] = resolve(flags=root.obj["flags"])
    return root.obj["config"]


def redis_session(ctx: click.Context, block_seconds: float = 0.0):
    """A connected Redis client for this invocation (see cfn.backend.session)."""
    from cfn.backend import session

    return session(config_of(ctx), block_seconds=block_seconds)


def project_db(ctx: click.Context):
    """The project's SQLite database, migrated forward."""
    from cfn.db import open_db

    return open_db(config_of(ctx).home)


def print_json(document: object) -> None:
    click.echo(json.dumps(document, sort_keys=True))


# Option callbacks validate before any connection is made, so bad input
# exits 2 without starting a server or writing anything.
def checked_id(kind: str) -> Callable:
    return lambda _ctx, _param, value: None if value is None else validate_id(value, kind)


def checked_timeout(_ctx, param, value: float | None) -> float | None:
    return None if value is None else validate.timeout(value, param.name)


def checked_fraction(_ctx, param, value: float | None) -> float | None:
    return None if value is None else validate.fraction(value, param.name)


def task_option(f: Callable) -> Callable:
    return click.option(
        "--task-id", required=True, metavar="ID", callback=checked_id("task ID"), help="Task ID."
    )(f)


def agent_option(f: Callable) -> Callable:
    return click.option(
        "--agent-id", required=True, metavar="ID", callback=checked_id("agent ID"),
        help="Agent ID.",
    )(f)


def json_option(f: Callable) -> Callable:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
    )(f)


def timeout_option(default: float, what: str) -> Callable:
    return click.option(
        "--timeout",
        type=float,
        default=default,
        show_default=True,
        metavar="SECONDS",
        callback=checked_timeout,
        help=f"How long to wait for {what}; 0 checks once without waiting. "
        "Exit 3 when it runs out.",
    )
