"""`cfn report` and `cfn collect-results`: agent results and quorum."""

from __future__ import annotations

import click

from cfn.cli import hot
from cfn.cli._common import (
    COUNT,
    FRACTION,
    agent_option,
    feedback_of,
    json_option,
    print_json,
    project_of,
    task_option,
    timeout_option,
)
from cfn.cli.feedback import Waiting
from cfn.coordination import results
from cfn.errors import ExitCode
from cfn.validate import json_text


@click.command()
@task_option
@agent_option
@click.option("--status", type=click.Choice(results.STATUSES), default="success",
              show_default=True, help="Whether the agent's work succeeded.")
@click.option(
    "--confidence", type=FRACTION,
    help="0 to 1. Omit when unknown: a report without one has none.",
)
@click.option("--result", "result_json", metavar="JSON", help="The result, as JSON.")
@json_option
@click.pass_context
def report(ctx, task_id, agent_id, status, confidence, result_json, as_json) -> None:
    """Report an agent's result for a task (a later report replaces it)."""
    result = json_text(result_json, "--result") if result_json is not None else None
    hot.report(project_of(ctx), task_id, agent_id, status, confidence, result, as_json)


@click.command(name="collect-results")
@task_option
@click.option("--expected", type=COUNT, required=True, help="Agents expected.")
@click.option(
    "--threshold", type=FRACTION, required=True,
    help="Fraction of EXPECTED that must succeed: quorum = ceil(expected * threshold).",
)
@timeout_option(300, "all expected reports")
@json_option
@click.pass_context
def collect_results(ctx, task_id, expected, threshold, timeout, as_json) -> None:
    """Wait for EXPECTED reports, then judge the quorum. Never consumes results.

    Returns as soon as all have reported, or at the timeout with what arrived
    (exit 3). Exit 0 when the quorum of successes is met, 1 when it is not.
    What was collected is also recorded in the project database (`cfn history`).
    """
    quorum = results.quorum_of(expected, threshold)
    project = project_of(ctx)
    project.connect()  # the wait's clock starts once Redis is reached
    with Waiting(feedback_of(ctx), f"0 of {expected} reported") as waiting:
        waiting.note(f"waiting for {expected} reports on task {task_id} (quorum {quorum}, "
                     f"timeout {timeout:g} s)")
        outcome = project.collect_results(task_id, expected=expected, threshold=threshold,
                                          timeout=timeout,
                                          on_report=_announcer(waiting, expected, quorum))
    if as_json:
        print_json(outcome.to_dict())
    else:
        _print_table(outcome)
    if outcome.timed_out:
        click.echo(
            f"cfn: timed out after {timeout:g}s with {outcome.count} of {expected} reports",
            err=True,
        )
        ctx.exit(ExitCode.TIMEOUT)
    ctx.exit(ExitCode.OK if outcome.met else ExitCode.NEGATIVE)


def _announcer(waiting: Waiting, expected: int, quorum: int) -> results.OnReport:
    """Says each report as it arrives, and how far the wait has come."""
    def heard(rep: results.Report, count: int) -> None:
        waiting.state = f"{count} of {expected} reported"
        confidence = "" if rep.confidence is None else f" (confidence {rep.confidence:.2f})"
        waiting.arrived(f"{rep.agent_id} reported {rep.status}{confidence} — {count} of "
                        f"{expected}, quorum {quorum}", rep.status)

    return heard


def _print_table(outcome: results.Collection) -> None:
    mean = "none" if outcome.mean_confidence is None else f"{outcome.mean_confidence:.3f}"
    click.echo(
        f"quorum {outcome.quorum} of {outcome.expected} (threshold {outcome.threshold:g}): "
        f"{'met' if outcome.met else 'not met'}; {outcome.count} reported, "
        f"{outcome.succeeded} succeeded, mean confidence {mean}"
    )
    for rep in outcome.results:
        confidence = "-" if rep.confidence is None else f"{rep.confidence:.2f}"
        click.echo(f"{rep.agent_id}\t{rep.status}\t{confidence}")


@click.group(name="results")
def results_group() -> None:
    """Agents' results: report one, collect them with a quorum.

    \b
    cfn results report --task-id T --agent-id coder-1 --confidence 0.92
    cfn results collect --task-id T --expected 2 --threshold 0.9 --timeout 600
    (`cfn report` and `cfn collect-results`, their old names, still work)
    """


results_group.add_command(report, "report")
results_group.add_command(collect_results, "collect")
