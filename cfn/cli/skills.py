"""`cfn skills`: the skills registry and its approvals."""

from __future__ import annotations

from pathlib import Path

import click

from cfn.cli._common import (
    FRACTION,
    agent_option,
    checked_id,
    config_of,
    json_option,
    print_json,
    project_of,
)
from cfn.cli.output import print_table
from cfn.errors import ExitCode

name_argument = click.argument("name", callback=checked_id("skill name"))


@click.group()
def skills() -> None:
    """Register skills, approve or reject them, and read their history."""


@skills.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", callback=checked_id("skill name"),
              help="Registry name (default: the file's stem or the directory's name).")
@json_option
@click.pass_context
def add(ctx, path: Path, name: str | None, as_json: bool) -> None:
    """Register the skill at PATH (a file or directory) with its content hash.

    A registered skill whose content changed goes back to pending.
    """
    from cfn import skills as registry

    skill, change = registry.add(project_of(ctx).db, path, name)
    if as_json:
        print_json({**skill, "change": change})
    else:
        click.echo(f"{change}\t{skill['name']}\t{skill['status']}\t{skill['content_hash'][:12]}")


@skills.command(name="ls")
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "escalated"]),
              help="Only skills in this state.")
@json_option
@click.pass_context
def ls(ctx, status: str | None, as_json: bool) -> None:
    """List registered skills."""
    from cfn import skills as registry

    rows = registry.list_skills(project_of(ctx).db, status)
    if as_json:
        print_json(rows)
        return
    print_table(("skill", "status", "hash", "path"),
                [(row["name"], row["status"], row["content_hash"][:12], row["content_path"])
                 for row in rows])


def _decision_command(decision: str, summary: str) -> click.Command:
    @click.command(name=decision, help=f"{summary} NAME, recording who and how sure.")
    @name_argument
    @agent_option
    @click.option("--confidence", type=FRACTION, required=True, help="0 to 1.")
    @click.option("--note", help="Free text kept in the history.")
    @json_option
    @click.pass_context
    def command(ctx, name, agent_id, confidence, note, as_json) -> None:
        from cfn import skills as registry

        skill = registry.decide(project_of(ctx).db, name, decision, agent_id=agent_id,
                                confidence=confidence, note=note)
        if as_json:
            print_json(skill)
        else:
            click.echo(f"{skill['name']}\t{skill['status']}")

    return command


skills.add_command(_decision_command("approve", "Approve"))
skills.add_command(_decision_command("reject", "Reject"))
skills.add_command(_decision_command("escalate", "Escalate"))


@skills.command()
@name_argument
@click.option("--risk", type=FRACTION, required=True, help="0 to 1.")
@click.option("--coverage", type=FRACTION, required=True, help="Test coverage, 0 to 1.")
@click.option("--agent-id", callback=checked_id("agent ID"), help="Who assessed it.")
@json_option
@click.pass_context
def evaluate(ctx, name, risk, coverage, agent_id, as_json) -> None:
    """Apply the automatic rule to NAME.

    \b
    approve   at risk <= skill_approve_risk (0.30) and coverage >= skill_approve_coverage (0.95)
    escalate  at risk >  skill_escalate_risk (0.60)
    review    otherwise: a person decides (status stays as it is)
    Exit 0 when approved, 1 otherwise.
    """
    from cfn import skills as registry

    config = config_of(ctx)
    rule = registry.Rule(config.skill_approve_risk, config.skill_approve_coverage,
                         config.skill_escalate_risk)
    skill, decision, why = registry.evaluate(project_of(ctx).db, name, risk=risk,
                                             coverage=coverage, rule=rule, agent_id=agent_id)
    if as_json:
        print_json({"skill": skill, "decision": decision, "why": why})
    else:
        click.echo(f"{decision}\t{skill['name']}\t{why}")
    ctx.exit(ExitCode.OK if decision == "approve" else ExitCode.NEGATIVE)


@skills.command()
@name_argument
@json_option
@click.pass_context
def history(ctx, name, as_json) -> None:
    """Show NAME's approval history, oldest first."""
    from cfn import skills as registry

    rows = registry.history(project_of(ctx).db, name)
    if as_json:
        print_json(rows)
        return
    for row in rows:
        confidence = "-" if row["confidence"] is None else f"{row['confidence']:.2f}"
        note = (row["metadata"] or {}).get("note") or (row["metadata"] or {}).get("rule") or ""
        click.echo(f"{row['created_at']}\t{row['decision']}\t{row['agent_id'] or '-'}\t"
                   f"{confidence}\t{note}")
