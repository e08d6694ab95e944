"""`cfn doctor` (also `cfn health`): check the setup, say how to fix what is not right."""

from __future__ import annotations

import click

from cfn.cli._common import config_of, json_option, print_json
from cfn.cli.output import print_table
from cfn.errors import ExitCode

HEADERS = ("check", "status", "detail", "fix")


@click.command()
@json_option
@click.pass_context
def doctor(ctx, as_json: bool) -> None:
    """Check Python, Redis, the database, container engine and agent image, the claude
    CLI, provider keys and compose; each with how to fix it (keys are never shown).

    \b
    Exit 0 when Python, Redis and the database work (missing optional parts are
    warnings); 1 when one of them does not.
    """
    from cfn.doctor import healthy, run_checks

    checks = run_checks(config_of(ctx))
    ok = healthy(checks)
    if as_json:
        print_json({"ok": ok, "checks": [check.to_dict() for check in checks]})
    else:
        print_table(HEADERS, [(c.name, c.status, c.detail, c.fix) for c in checks])
    if not ok:
        click.echo("cfn: a required check failed; see its fix above", err=True)
    ctx.exit(ExitCode.OK if ok else ExitCode.NEGATIVE)

