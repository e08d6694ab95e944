"""Helpers shared by the click commands: the project, checked options, output."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from cfn import validate
from cfn.cli.output import print_json  # noqa: F401  (re-exported: how every command prints JSON)
from cfn.ids import validate_id

if TYPE_CHECKING:
    from cfn.config import Config
    from cfn.project import Project


def project_of(ctx: click.Context) -> Project:
    """This invocation's project (configuration resolved once; Redis and the database
    opened on first use, closed when the command ends)."""
    root = ctx.find_root()
    root.obj = root.obj or {"flags": {}}
    if "project" not in root.obj:
        from cfn.project import Project

        root.obj["project"] = Project.open(**root.obj["flags"])
        root.call_on_close(root.obj["project"].close)
    return root.obj["project"]


def config_of(ctx: click.Context) -> Config:
    """The resolved configuration of this invocation's project."""
    return project_of(ctx).config


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
