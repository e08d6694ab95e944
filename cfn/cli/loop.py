"""`cfn loop`: run, resume, and read the CFN Loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import click

from cfn.cli._common import (
    COUNT,
    FRACTION,
    POSITIVE,
    checked_id,
    json_option,
    print_json,
    project_of,
)
from cfn.errors import NegativeOutcome


def _names(_ctx, _param, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


@click.group()
def loop() -> None:
    """The CFN Loop: implementers, gate, validators' consensus, product-owner decision."""


@loop.command()
@click.option("--task-id", required=True, callback=checked_id("task ID"),
              help="The task the loop works on (its keys and records).")
@click.option("--epic", required=True, help="What to build.")
@click.option("--mode", type=click.Choice(["mvp", "standard", "enterprise"]), default="standard",
              show_default=True, help="Thresholds: mvp 0.70/0.80/5, standard 0.95/0.90/10, "
                                      "enterprise 0.98/0.95/15 (gate/consensus/iterations).")
@click.option("--loop3-agents", callback=_names, help="Implementer profiles, comma separated "
                                                      "(default: coder).")
@click.option("--loop2-agents", callback=_names, help="Validator profiles (default: "
                                                      "code-reviewer,tester,security-specialist).")
@click.option("--product-owner", callback=checked_id("profile"), help="Default: product-owner.")
@click.option("--max-iterations", type=COUNT,
              help="Iteration limit (default: the mode's).")
@click.option("--gate-threshold", type=FRACTION,
              help="Gate score needed, 0 to 1 (default: the mode's).")
@click.option("--consensus-threshold", type=FRACTION,
              help="Validators' consensus needed, 0 to 1 (default: the mode's).")
@click.option("--runtime", type=click.Choice(["process", "container", "kubernetes"]),
              default="process", show_default=True, help="Where the loop's agents run.")
@click.option("--workspace", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory the agents work in (default: the project root).")
@click.option("--image", help="Container runtime: the agents' image (default: agent_image).")
@click.option("--network", help="Container runtime: the agents' network, e.g. the task's "
                                "compose network (default: agent_network).")
@click.option("--test-command", help="Shell command whose pass rate is the gate score.")
@click.option("--budget-usd", type=POSITIVE,
              help="Stop (exit 1) once agents reported this much cost.")
@json_option
@click.pass_context
def run(ctx, task_id, epic, mode, loop3_agents, loop2_agents, product_owner, max_iterations,
        gate_threshold, consensus_threshold, runtime, workspace, image, network, test_command,
        budget_usd, as_json) -> None:
    """Run the loop until PROCEED (exit 0), ABORT, the iteration limit or the budget (exit 1).

    Progress goes to stderr; --json prints the final report on stdout.
    """
    from cfn.loop.spec import LoopSpec

    defaults = LoopSpec(task_id=task_id, epic=epic)
    spec = LoopSpec(
        task_id=task_id, epic=epic, mode=mode,
        loop3_agents=loop3_agents or defaults.loop3_agents,
        loop2_agents=loop2_agents or defaults.loop2_agents,
        product_owner=product_owner or defaults.product_owner, max_iterations=max_iterations,
        gate_threshold=gate_threshold, consensus_threshold=consensus_threshold,
        runtime=runtime, workspace=str(workspace.resolve()) if workspace else None,
        image=image, network=network, test_command=test_command, budget_usd=budget_usd)
    _run(ctx, spec, as_json)


@loop.command()
@click.argument("task_id", callback=checked_id("task ID"))
@json_option
@click.pass_context
def resume(ctx, task_id, as_json) -> None:
    """Continue TASK's loop after its orchestrator died; finished agents are not run again.

    A loop that already ended is left as it is: this says how it ended and exits as it did
    (0 proceeded, 1 aborted, exhausted or over budget); --json prints its report again.
    """
    from cfn.loop.store import load_spec

    project = project_of(ctx)
    ended = project.ended_loop(task_id)
    if ended is not None:
        click.echo(f"cfn: {task_id}'s loop already ended: {ended.status} ({ended.reason}); "
                   "nothing to resume (cfn loop report shows it)", err=True)
        _finish(ctx, ended, as_json)  # exits
    _finish(ctx, project.run_loop(load_spec(project.db, task_id)), as_json)


def _run(ctx, spec, as_json: bool) -> None:
    _finish(ctx, project_of(ctx).run_loop(spec), as_json)


def _finish(ctx, report, as_json: bool) -> NoReturn:
    """Print the report (--json) and exit as the loop ended."""
    if as_json:
        print_json(report.to_dict())
    ctx.exit(report.exit_code)


@loop.command()
@click.argument("task_id", callback=checked_id("task ID"))
@json_option
@click.pass_context
def status(ctx, task_id, as_json) -> None:
    """Where TASK's loop stands: its status, last decision and running agents."""
    from cfn.loop import store

    doc = store.status(project_of(ctx).db, task_id)
    if doc is None:
        raise NegativeOutcome(f"no loop for task {task_id}")
    task, last, running = doc, doc["last_iteration"], doc["running_agents"]
    if as_json:
        print_json(doc)
        return
    click.echo(f"{task_id}: {task['status']} ({task['mode']}), "
               + (f"iteration {last['iteration']}: {last['decision']}" if last else
                  "no iteration decided yet")
               + (f"; running: {', '.join(running)}" if running else ""))


@loop.command()
@click.argument("task_id", callback=checked_id("task ID"))
@json_option
@click.pass_context
def report(ctx, task_id, as_json) -> None:
    """Per iteration and per agent: what ran, the scores, and why each decision was made."""
    found = project_of(ctx).history(task_id)
    if found is None:
        raise NegativeOutcome(f"no loop for task {task_id}")
    if as_json:
        print_json(found)
        return
    task = found["task"]
    click.echo(f"Task {task_id} — {task['status']} ({task['mode']})\nEpic: {task['epic']}")
    for it in found["iterations"]:
        click.echo(f"\nIteration {it['iteration']}")
        for agent in (a for a in found["agents"] if a["iteration"] == it["iteration"]):
            confidence = "-" if agent["confidence"] is None else f"{agent['confidence']:.2f}"
            click.echo(f"  {agent['phase'] or '-':<12} {agent['agent_id']:<28} "
                       f"{agent['status']:<15} confidence {confidence}")
        click.echo(f"  gate       {_score(it['gate_score'])} "
                   f"{'passed' if it['gate_passed'] else 'failed'}")
        click.echo(f"  consensus  {_score(it['consensus_score'])} "
                   f"{'reached' if it['consensus_passed'] else 'not reached'}")
        click.echo(f"  decision   {it['decision']}: {it['reason']}")
        for line in json.loads(it["feedback"] or "[]"):
            click.echo(f"    feedback: {line}")


def _score(value) -> str:
    return "-   " if value is None else f"{value:.2f}"
