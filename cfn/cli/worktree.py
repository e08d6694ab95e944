"""`cfn worktree`: a git worktree per branch, with its own ports, env file and compose stack."""

from __future__ import annotations

from pathlib import Path

import click

from cfn.cli import completers
from cfn.cli._common import json_option, print_json
from cfn.cli.output import print_table


def _context(ctx):
    """The registry lives in the main worktree's state directory, shared by all worktrees."""
    from cfn.project import Project
    from cfn.worktrees import git

    root = git.main_root(Path.cwd())
    project = Project.open(root, **ctx.find_root().obj["flags"])
    ctx.call_on_close(project.close)
    return root, project


def _say(message: str) -> None:
    click.echo(f"cfn: {message}", err=True)


@click.group()
def worktree() -> None:
    """Worktrees with collision-free ports and an isolated compose stack each."""


@worktree.command()
@click.argument("branch", shell_complete=completers.branches)
@click.option("--base", help="Start a new branch from this ref (default: HEAD).")
@click.option("--path", type=click.Path(file_okay=False, path_type=Path),
              help="Where the worktree goes (default: ../REPO-SLUG).")
@click.option("--no-start", is_flag=True, help="Lease ports and write files; start nothing.")
@json_option
@click.pass_context
def up(ctx, branch, base, path, no_start, as_json) -> None:
    """Create BRANCH's worktree, lease the ports its compose file publishes, write its env
    file and compose override, and start its stack, showing compose's output on stderr
    (idempotent: a second up keeps everything). Without a compose file, nothing starts."""
    from cfn.worktrees import manage

    root, project = _context(ctx)
    made = manage.up(project.db, root, branch, base=base, path=path, start=not no_start,
                     compose_tool=project.config.compose, say=_say)
    if as_json:
        print_json(made.to_dict())
        return
    click.echo(made.path)
    if made.ports:
        _say(f"{made.project}: " + ", ".join(f"{s} {p}" for s, p in made.ports.items()))


@worktree.command()
@click.argument("branch", shell_complete=completers.branches)
@click.option("--volumes", is_flag=True, help="Also delete the stack's volumes.")
@click.option("--remove", is_flag=True, help="Also remove the worktree (git worktree remove).")
@click.pass_context
def down(ctx, branch, volumes, remove) -> None:
    """Stop BRANCH's stack (showing compose's output on stderr) and release its ports."""
    from cfn.worktrees import manage

    root, project = _context(ctx)
    manage.down(project.db, root, branch, volumes=volumes, remove=remove,
                compose_tool=project.config.compose, say=_say)


@worktree.command(name="ls")
@json_option
@click.pass_context
def ls(ctx, as_json) -> None:
    """List worktrees: branch, path, ports, stack state."""
    from cfn.worktrees import manage

    found = manage.list_all(_context(ctx)[1].db)
    if as_json:
        print_json([w.to_dict() for w in found])
        return
    print_table(("branch", "stack", "path", "ports"),
                [(w.branch, w.stack, str(w.path),
                  ",".join(f"{s}={p}" for s, p in w.ports.items()) or "-") for w in found])


@worktree.command()
@click.argument("branch", shell_complete=completers.branches)
@json_option
@click.pass_context
def ports(ctx, branch, as_json) -> None:
    """Print BRANCH's leased ports, one service per line."""
    from cfn.worktrees import manage

    leased = manage.get(_context(ctx)[1].db, branch).ports
    if as_json:
        print_json(leased)
        return
    for service, port in leased.items():
        click.echo(f"{service}\t{port}")


@worktree.command()
@click.argument("branch", shell_complete=completers.branches)
@json_option
@click.pass_context
def env(ctx, branch, as_json) -> None:
    """Print BRANCH's environment as exports: eval "$(cfn worktree env BRANCH)". REDIS_URL
    only while the worktree's own Redis runs."""
    from cfn.worktrees import compose, manage

    values = manage.environment(_context(ctx)[1].db, branch, say=_say)
    if as_json:
        print_json(values)
    else:
        click.echo(compose.exports(values), nl=False)
