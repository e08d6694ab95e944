"""`cfn db`: the project database's schema version, migrations and rollbacks."""

from __future__ import annotations

import click

from cfn.cli._common import COUNT, VERSION, config_of, json_option, print_json


def _connect(ctx):
    """The database as it is: these commands manage migrations, so none runs on open."""
    from cfn.db import connect, db_path

    return connect(db_path(config_of(ctx).home))


@click.group()
def db() -> None:
    """The project's SQLite database (.cfn/cfn.db): status, migrate, rollback."""


@db.command()
@json_option
@click.pass_context
def status(ctx, as_json: bool) -> None:
    """Show the schema version, applied and pending migrations."""
    from cfn.db import db_path, migrate

    database = _connect(ctx)
    known = migrate.load()
    migrate.verify(database, known)
    done = migrate.applied(database)
    report = {
        "path": str(db_path(config_of(ctx).home)),
        "version": max(done, default=0),
        "applied": [f"{v:04d}_{done[v]['name']}" for v in sorted(done)],
        "pending": [m.label for m in known if m.version not in done],
    }
    if as_json:
        print_json(report)
        return
    click.echo(f"{report['path']}: version {report['version']}")
    for label in report["applied"]:
        click.echo(f"applied  {label}")
    for label in report["pending"]:
        click.echo(f"pending  {label}")


@db.command(name="migrate")
@click.option("--to", type=VERSION, help="Stop at this version.")
@click.pass_context
def migrate_(ctx, to: int | None) -> None:
    """Apply pending migrations (commands that use the DB do this themselves)."""
    from cfn.db import migrate

    for label in migrate.migrate(_connect(ctx), to=to):
        click.echo(f"applied  {label}", err=True)


@db.command()
@click.option("--steps", type=COUNT, help="Undo this many migrations (default 1).")
@click.option("--to", type=VERSION, help="Undo every migration above this version.")
@click.option("--dry-run", is_flag=True, help="Show what would be undone, change nothing.")
@click.pass_context
def rollback(ctx, steps: int | None, to: int | None, dry_run: bool) -> None:
    """Undo the newest migrations, each in one transaction.

    Note: the next command that opens the database migrates it forward again;
    roll back just before replacing cfn with an older version.
    """
    from cfn.db import migrate

    if steps is not None and to is not None:  # said before the database is opened
        raise click.UsageError("give --steps or --to, not both")
    database = _connect(ctx)
    plan = migrate.rollback_plan(database, steps=steps, to=to)
    if dry_run:
        for migration in plan:
            click.echo(f"would roll back  {migration.label}")
            click.echo(migration.down)
        return
    for label in migrate.rollback(database, plan):
        click.echo(f"rolled back  {label}", err=True)
