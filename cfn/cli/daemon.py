"""`cfn daemon`: the worker daemon (cfn.daemon): start, stop, status, trigger, logs."""

from __future__ import annotations

import sys
import time

import click

from cfn.cli._common import LEASE, SECONDS, checked_id, json_option, print_json, project_of
from cfn.cli.output import duration, echo, moment, print_table
from cfn.errors import NegativeOutcome

SANDBOX = click.Choice(("strict", "permissive", "disabled"))


@click.group(name="daemon")
def daemon() -> None:
    """Run scheduled background workers (map, audit, testgaps, ...), locally or as headless
    Claude Code in sandboxes, fed by a Redis queue.

    One daemon per project on a machine; daemons on several machines share the queue.
    Each stops itself after daemon_max_lifetime, and headless runs stop at their budgets
    (daemon_runs_per_hour, daemon_runs_per_day, daemon_spend_per_day). docs/daemon.md has
    the workers, their settings and how to override them (workers/NAME.toml).
    """


def _names(_ctx, _param, value: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (value or "").split(",") if n.strip())


@daemon.command()
@click.option("--foreground", is_flag=True,
              help="Run in this terminal until Ctrl-C (default: in the background).")
@click.option("--workers", "names", callback=_names, metavar="A,B",
              help="Schedule these workers (default: every enabled one).")
@click.option("--headless", is_flag=True,
              help="Run headless workers with Claude Code (without it they run their local "
                   "versions, or are skipped).")
@click.option("--sandbox", type=SANDBOX,
              help="Every headless worker's sandbox, instead of its own: strict (project "
                   "read-only, no network but the provider), permissive (project writable), "
                   "disabled (no sandbox).")
@click.option("--runtime", type=click.Choice(("process", "container")), default="process",
              show_default=True, help="Where headless runs go.")
@click.option("--no-schedule", is_flag=True,
              help="Only run queued jobs (a pool that others feed).")
@click.option("--no-consume", is_flag=True,
              help="Only enqueue due workers (a queue manager for a pool).")
@click.option("--max-lifetime", type=LEASE, metavar="SECONDS",
              help="Stop after this long (default: daemon_max_lifetime, 12 hours).")
@json_option
@click.pass_context
def start(ctx, foreground, names, headless, sandbox, runtime, no_schedule, no_consume,
          max_lifetime, as_json) -> None:
    """Start the project's daemon; a second start says where the first one runs."""
    from cfn.daemon import queue, service, workers

    project = project_of(ctx)
    workers.select(names, project.root)  # unknown names are refused before anything starts
    if no_schedule and no_consume:
        raise click.UsageError("--no-schedule and --no-consume together leave nothing to do")
    options = service.Options(workers=names, headless=headless, sandbox=sandbox,
                              runtime=runtime, schedule=not no_schedule,
                              consume=not no_consume, max_lifetime=max_lifetime)
    queue.connection(project).ping()  # Redis is there (and not a cluster) before it starts
    if foreground:
        service.serve(project, options)
        return
    state = service.start(project, options)
    if as_json:
        print_json(state)
    else:
        echo(f"daemon started: pid {state['pid']}, queue {state['namespace']}, "
             f"stops by {moment(state['ends_at'])}; log: {state['log']}")


@daemon.command()
@json_option
@click.pass_context
def stop(ctx, as_json) -> None:
    """Stop the project's daemon: its consumers finish their jobs (briefly), its headless
    runs are stopped. Exit 1 when none runs."""
    from cfn.daemon import service

    state = service.stop(project_of(ctx).home)
    if state is None:
        raise NegativeOutcome("no daemon runs for this project on this machine")
    if as_json:
        print_json({"stopped": True, "pid": state.get("pid")})
    else:
        echo(f"daemon stopped (pid {state.get('pid')})")


@daemon.command()
@click.option("--show-modes", is_flag=True,
              help="Add how each worker runs now and why (headless, local, skipped).")
@json_option
@click.pass_context
def status(ctx, show_modes, as_json) -> None:
    """The daemon (pid, start, lifetime), Claude Code, the queue, budgets and every worker:
    mode, sandbox, model, interval, last and next run, last result. Exit 1 when no daemon
    runs here."""
    from cfn.daemon.status import status as daemon_status

    found = daemon_status(project_of(ctx))
    if as_json:
        print_json(found)
    else:
        _print_status(found, show_modes)
    if not found["daemon"]["running"]:
        ctx.exit(1)


def _print_status(found: dict, show_modes: bool) -> None:
    here, claude, q, budgets = found["daemon"], found["claude"], found["queue"], found["budgets"]
    if here["running"]:
        echo(f"Daemon: running, pid {here['pid']} on {here['host']}, started "
             f"{moment(here['started_at'])}, stops by {moment(here['ends_at'])}")
        echo(f"  log: {here['log']}")
    else:
        ended = here.get("last_exit")
        echo("Daemon: not running" + (f" (the last one stopped {moment(ended['at'])}: "
                                      f"{ended['reason']})" if ended else ""))
    others = [d for d in found["daemons"] if d.get("id") != here.get("id")]
    if others:
        echo(f"Other daemons on the queue: {', '.join(d['id'] for d in others)}")
    echo("Claude Code: " + (f"available ({claude['version'] or claude['path']})"
                            if claude["available"] else
                            "not installed: headless workers run their local versions"))
    queued = ", ".join(f"{k} {v}" for k, v in q["queued"].items() if v) or "none"
    echo(f"Queue {q['namespace']}: queued {queued}; running {q['running']}; "
         f"dead letters {q['dead']}")
    echo(f"Budgets: {budgets['runs_last_hour']}/{budgets['runs_per_hour']} headless runs "
         f"this hour, {budgets['runs_last_day']}/{budgets['runs_per_day']} today, "
         f"${budgets['spend_today_usd']:.2f}/${budgets['spend_per_day_usd']:g} spent today")
    echo("")
    headers = ("WORKER", "MODE", "SANDBOX", "MODEL", "INTERVAL", "LAST RUN", "NEXT RUN",
               "LAST RESULT")
    if show_modes:
        headers += ("RUNS AS",)
    print_table(headers, [_worker_row(w, show_modes) for w in found["workers"]])


def _worker_row(worker: dict, show_modes: bool) -> tuple[str, ...]:
    last = worker["last_run"] or {}
    result = last.get("status", "-")
    if last.get("violations"):
        result += f" ({last['violations']} sandbox violations)"
    if last.get("reason") and result != "success":
        result += f": {last['reason']}"
    row = (worker["name"], worker["mode"], worker["sandbox"] or "-", worker["model"] or "-",
           duration(worker["interval_s"]) if worker["interval_s"] else "manual",
           _ago(last.get("finished_at")),
           "in " + duration(worker["next_in_s"]) if worker["next_in_s"] is not None else "-",
           result)
    if show_modes:
        row += (worker["runs_as"] + (f": {worker['why']}" if worker["why"] else ""),)
    return row


def _ago(epoch: float | None) -> str:
    return f"{duration(time.time() - epoch)} ago" if epoch else "-"


@daemon.command()
@click.option("-w", "--worker", "name", required=True, metavar="NAME",
              help="The worker to run (cfn daemon status lists them).")
@click.option("--headless", is_flag=True, help="Run it with Claude Code (if it is headless).")
@click.option("--sandbox", type=SANDBOX, help="Its sandbox, instead of its own.")
@click.option("--wait", is_flag=True, help="Wait for its result; exit 1 unless it succeeded.")
@click.option("--timeout", type=SECONDS, default=3600, show_default=True, metavar="SECONDS",
              help="How long --wait waits; exit 3 when it runs out.")
@json_option
@click.pass_context
def trigger(ctx, name, headless, sandbox, wait, timeout, as_json) -> None:
    """Queue a run of a worker now, at its priority (any daemon of the queue runs it)."""
    from cfn.daemon import jobs, service

    project = project_of(ctx)
    job = jobs.trigger(project, name, headless=headless, sandbox=sandbox)
    if not wait:
        if service.running(project.home) is None:
            print(f"cfn: no daemon runs for this project here; `cfn daemon start` (or a "
                  f"daemon on another machine) runs job {job.id}", file=sys.stderr)
        if as_json:
            print_json(job.to_dict())
        else:
            echo(job.id)
        return
    job = jobs.wait(project, job.id, timeout)
    if as_json:
        print_json(job.to_dict())
    else:
        _print_job(job)
    if not job.succeeded:
        ctx.exit(1)


@daemon.command()
@click.argument("job_id", callback=checked_id("job ID"))
@click.option("--wait", is_flag=True, help="Wait for it to end; exit 1 unless it succeeded.")
@click.option("--timeout", type=SECONDS, default=3600, show_default=True, metavar="SECONDS",
              help="How long --wait waits; exit 3 when it runs out.")
@json_option
@click.pass_context
def job(ctx, job_id, wait, timeout, as_json) -> None:
    """Show a job (what `trigger` printed): its status and, once it ended, its result."""
    from cfn.daemon import jobs

    project = project_of(ctx)
    found = jobs.wait(project, job_id, timeout) if wait else jobs.get(project, job_id)
    if found is None:
        raise NegativeOutcome(f"no job {job_id} (finished jobs are kept for a week)")
    if as_json:
        print_json(found.to_dict())
    else:
        _print_job(found)
    if found.status in jobs.ENDED and not found.succeeded:
        ctx.exit(1)


def _print_job(job) -> None:
    import json

    result = job.result or {}
    mode = f" ({result['mode']})" if result.get("mode") in ("local", "headless") else ""
    echo(f"{job.worker}: {result.get('status', job.status)}{mode}"
         + (f": {result['reason']}" if result.get("reason") else "")
         + (f": {job.error}" if job.error else ""))
    if result.get("result") is not None:
        value = result["result"]
        echo(value if isinstance(value, str) else json.dumps(value, indent=2))


@daemon.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing as the daemon writes.")
@click.option("-n", "--lines", type=click.IntRange(0, 10**6), default=50, show_default=True,
              help="How many of the last lines to print first.")
@click.pass_context
def logs(ctx, follow, lines) -> None:
    """Print the daemon's log (its own, its consumers' and its jobs')."""
    from cfn.daemon import service

    path = service.log_path(project_of(ctx).home)
    if not path.exists():
        raise NegativeOutcome("the daemon has not run here yet: no log")
    with open(path, "rb") as handle:
        text = handle.read().decode(errors="replace").splitlines()
        for line in text[-lines:] if lines else []:
            echo(line)
        while follow:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            else:
                time.sleep(0.2)
