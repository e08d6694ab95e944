"""Helpers shared by the click commands: the project, checked options, output."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from cfn import defaults
from cfn.cli import completers
from cfn.cli.feedback import Settings
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


def feedback_of(ctx: click.Context) -> Settings:
    """The global --quiet, --verbose and --color choices of this invocation."""
    return (ctx.find_root().obj or {}).get("feedback") or Settings()


def config_of(ctx: click.Context) -> Config:
    """The resolved configuration of this invocation's project."""
    return project_of(ctx).config


# Option types and callbacks validate before any connection is made, so bad input
# exits 2 without starting a server or writing anything.
def checked_id(kind: str) -> Callable:
    return lambda _ctx, _param, value: None if value is None else validate_id(value, kind)


class Number(click.FloatRange):
    """A float in a range that also refuses nan and infinity: click's FloatRange lets nan
    through (it compares false with both bounds)."""

    def convert(self, value, param, ctx) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


# Every number an option takes is bounded by what cfn can honour (tests/test_fuzz.py
# checks that each numeric option declares both bounds).
SECONDS = Number(min=0, max=defaults.MAX_SECONDS)  # a wait (0 checks once), as validate.timeout
LEASE = Number(min=0, min_open=True, max=defaults.MAX_SECONDS)  # a lifetime or a time limit
FRACTION = Number(min=0, max=1)  # a confidence, a threshold, as validate.fraction
POSITIVE = Number(min=0, min_open=True, max=1e6)  # an amount: a budget in USD, CPUs
COUNT = click.IntRange(min=1, max=defaults.MAX_COUNT)  # agents, iterations, steps
VERSION = click.IntRange(min=0, max=defaults.MAX_COUNT)  # a schema version
TTL = click.IntRange(min=1, max=defaults.MAX_SECONDS)  # whole seconds, as Redis expires keys
RUNTIME = click.Choice(["process", "container", "kubernetes"])  # cfn.agents.runtimes.RUNTIMES


def task_id_option(f: Callable) -> Callable:
    """--task-id, required: for commands whose arguments are something else (agents)."""
    return click.option(
        "--task-id", required=True, metavar="ID", callback=checked_id("task ID"), help="Task ID.",
        shell_complete=completers.tasks,
    )(f)


def task_option(f: Callable) -> Callable:
    """The task, as `--task-id T` or as the command's argument (`cfn signal send T ...`),
    passed on as `task_id`."""
    @functools.wraps(f)
    def with_task(*args, task: str | None = None, task_id: str | None = None, **kwargs):
        if task and task_id and task != task_id:
            raise click.UsageError(f"the task is given twice, as {task} and --task-id "
                                   f"{task_id}; give it once")
        if not (task or task_id):
            raise click.UsageError("Missing the task: give it as TASK or --task-id ID.")
        return f(*args, task_id=task or task_id, **kwargs)

    with_task = click.option("--task-id", metavar="ID", callback=checked_id("task ID"),
                             help="Task ID (or give it as TASK).",
                             shell_complete=completers.tasks)(with_task)
    return click.argument("task", required=False, callback=checked_id("task ID"),
                          shell_complete=completers.tasks)(with_task)


def agent_option(f: Callable) -> Callable:
    return click.option(
        "--agent-id", required=True, metavar="ID", callback=checked_id("agent ID"),
        help="Agent ID.", shell_complete=completers.agents,
    )(f)


def json_option(f: Callable) -> Callable:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
    )(f)


def timeout_option(default: float, what: str) -> Callable:
    return click.option(
        "--timeout",
        type=SECONDS,
        default=default,
        show_default=True,
        metavar="SECONDS",
        help=f"How long to wait for {what}; 0 checks once without waiting. "
        "Exit 3 when it runs out.",
    )
