"""`cfn loop`: run, resume, and read the CFN Loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from cfn import defaults
from cfn.cli._common import (
    COUNT,
    FRACTION,
    POSITIVE,
    RUNTIME,
    checked_id,
    json_option,
    print_json,
    project_of,
    task_option,
)
from cfn.errors import ExitCode, NegativeOutcome


def _names(_ctx, _param, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


@click.group()
def loop() -> None:
    """The CFN Loop: implementers, gate, validators' consensus, product-owner decision."""


@loop.command()
@task_option
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
@click.option("--runtime", type=RUNTIME,
              default="process", show_default=True, help="Where the loop's agents run.")
@click.option("--workspace", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Directory the agents work in (default: the project root).")
@click.option("--image", help="Container runtime: the agents' image (default: agent_image).")
@click.option("--network", help="Container runtime: the agents' network, e.g. the task's "
                                "compose network (default: agent_network).")
@click.option("--test-command", help="Shell command whose pass rate is the gate score.")
@click.option("--budget-usd", type=POSITIVE,
              help="Stop (exit 1) once agents reported this much cost.")
@click.option("--continue", "continuing", is_flag=True,
              help="Run more iterations on a task whose loop ended (else exit 2).")
@json_option
@click.pass_context
def run(ctx, task_id, epic, mode, loop3_agents, loop2_agents, product_owner, max_iterations,
        gate_threshold, consensus_threshold, runtime, workspace, image, network, test_command,
        budget_usd, continuing, as_json) -> None:
    """Run the loop until PROCEED (exit 0), ABORT, the iteration limit or the budget (exit 1).

    Progress goes to stderr; --json prints the final report on stdout. Ctrl-C leaves the
    agents running and says how to resume or stop them (exit 130); follow a loop from
    another terminal with `cfn loop watch TASK`.
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
    _run(ctx, spec, as_json, continuing=continuing)


@loop.command()
@task_option
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
    _run(ctx, load_spec(project.db, task_id), as_json)


def _run(ctx, spec, as_json: bool, *, continuing: bool = False) -> None:
    project = project_of(ctx)
    try:
        report = project.run_loop(spec, continuing=continuing)
    except KeyboardInterrupt:
        _interrupted(ctx, project, spec.task_id)
    _finish(ctx, report, as_json)


def _interrupted(ctx, project, task_id: str) -> NoReturn:
    """Ctrl-C: the agents run on (each under its own supervisor); say which, and how to
    resume the loop or stop them."""
    from cfn.loop import store

    status = store.status(project.db, task_id) or {"running_agents": []}
    running = status["running_agents"]
    click.echo(f"\ncfn: interrupted; {task_id}'s loop stopped, "
               + (f"its agents run on: {', '.join(running)}" if running else
                  "no agent of it is running"), err=True)
    click.echo(f"  resume the loop:  cfn loop resume {task_id}", err=True)
    if running:
        click.echo(f"  stop the agents:  cfn agents stop --task-id {task_id}", err=True)
    ctx.exit(ExitCode.INTERRUPTED)


def _finish(ctx, report, as_json: bool) -> NoReturn:
    """Print the report (--json) and exit as the loop ended."""
    if as_json:
        print_json(report.to_dict())
    ctx.exit(report.exit_code)


@loop.command()
@task_option
@json_option
@click.pass_context
def status(ctx, task_id, as_json) -> None:
    """Where TASK's loop stands: its status, last decision and running agents."""
    doc = project_of(ctx).loop_status(task_id)
    if doc is None:
        raise NegativeOutcome(f"no loop for task {task_id}")
    task, last, running = doc, doc["last_iteration"], doc["running_agents"]
    if as_json:
        print_json(doc)
        return
    click.echo(f"{task_id}: {task['status']} ({task['mode']}), "
               + (f"iteration {last['iteration']}: {last['decision']}" if last else
                  "no iteration decided yet")
               + (f"; running: {', '.join(running)}" if running else "")
               + (f"; orchestrator gone; resume with `cfn loop resume {task_id}`"
                  if task["status"] == "running" and not doc["orchestrator_alive"] else ""))


@loop.command()
@task_option
@json_option
@click.pass_context
def report(ctx, task_id, as_json) -> None:
    """Per iteration and agent: runtime, provider, model, duration, tokens, cost and
    confidence, and why the gate, the consensus and the decision came out as they did."""
    from cfn.cli.loop_report import report_lines

    found = project_of(ctx).history(task_id)
    if found is None:
        raise NegativeOutcome(f"no loop for task {task_id}")
    if as_json:
        print_json(found)
        return
    for line in report_lines(found):
        click.echo(line)


@loop.command()
@task_option
@click.pass_context
def watch(ctx, task_id) -> None:
    """Follow TASK's loop live until it ends, exiting as `cfn loop run` would.

    On a terminal: a table of iterations and agents (status, elapsed, tokens, cost against
    the budget, confidence, gate and consensus against their thresholds, each decision and
    its reason), redrawn as events come. Piped: one plain line per event. Exit 0 when
    it proceeded; 1 when it ended otherwise or its orchestrator is gone (resume it).
    """
    from cfn.cli.loop_view import show
    from cfn.loop import store

    project = project_of(ctx)
    if store.status(project.db, task_id) is None:
        raise NegativeOutcome(f"no loop for task {task_id}; start one with cfn loop run")
    try:
        view = show(project, task_id, out=sys.stdout, live=sys.stdout.isatty())
    except KeyboardInterrupt:
        _stopped_following(ctx, task_id)
    if view is not None and view.gone:
        click.echo(f"cfn: {task_id}'s orchestrator gone; resume with "
                   f"`cfn loop resume {task_id}`", err=True)
    ctx.exit(1 if view is None else view.exit_code)


class Duration(click.ParamType):
    """'90s', '10m', '2h', '1d' or plain seconds, as seconds (up to 30 days)."""

    name = "duration"
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        number, unit = (text[:-1], text[-1]) if text[-1:] in self.units else (text, "s")
        try:
            seconds = float(number) * self.units[unit]
        except ValueError:
            seconds = -1
        if not 0 <= seconds <= defaults.MAX_SECONDS:
            self.fail(f"{value!r} is no duration of up to 30 days: give e.g. 90s, 10m or 2h",
                      param, ctx)
        return seconds


@loop.command()
@task_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the loop "
                                                   "and its agents end.")
@click.option("--since", type=Duration(), metavar="DURATION",
              help="Only agents that ran in the last DURATION (90s, 10m, 2h).")
@click.option("-n", "--tail", type=click.IntRange(min=0, max=defaults.MAX_COUNT), metavar="N",
              help="Only the last N lines of each agent's log.")
@click.option("-t", "--timestamps", is_flag=True,
              help="Prefix lines with when they were written (as near as cfn knows: the log's "
                   "last change, or when a followed line was read).")
@click.pass_context
def logs(ctx, task_id, follow, since, tail, timestamps) -> None:
    """Every agent's log of TASK, each line prefixed `agent-id | `, as `docker compose logs`."""
    from cfn.agents import runs
    from cfn.loop.logs import task_logs

    project = project_of(ctx)
    known = runs.listing(project.db, task_id, latest_only=False)
    if not known:
        raise NegativeOutcome(f"no agent ran on task {task_id}")
    width = max(len(row["agent_id"]) for row in known)
    try:
        for line in task_logs(project, task_id, follow=follow, since_s=since, tail=tail):
            width = max(width, len(line.agent_id))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S ", time.localtime(line.at)) \
                if timestamps else ""
            click.echo(f"{line.agent_id:<{width}} | {stamp}{line.text}")
    except KeyboardInterrupt:
        _stopped_following(ctx, task_id)


def _stopped_following(ctx, task_id: str) -> NoReturn:
    click.echo(f"\ncfn: stopped following; {task_id}'s loop is not affected", err=True)
    ctx.exit(ExitCode.INTERRUPTED)
