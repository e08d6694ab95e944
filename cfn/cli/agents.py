"""`cfn spawn-agent`, `cfn agents ...` and `cfn route`: running agents."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from cfn import defaults
from cfn.cli import completers
from cfn.cli._common import (
    LEASE,
    POSITIVE,
    RUNTIME,
    SECONDS,
    checked_id,
    config_of,
    feedback_of,
    json_option,
    print_json,
    project_of,
    task_id_option,
)
from cfn.cli.feedback import Waiting
from cfn.cli.output import duration, print_table
from cfn.errors import ExitCode, NegativeOutcome


class _TrailingCommand(click.Command):
    """Everything after the first `--` is the agent's own argv, kept out of click's parsing."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["trailing_argv"] = tuple(args[cut + 1:])
            args = args[:cut]
        return super().parse_args(ctx, args)


@click.command(name="spawn-agent", cls=_TrailingCommand)
@click.argument("agent_id", callback=checked_id("agent ID"), shell_complete=completers.agents)
@click.argument("task_id", callback=checked_id("task ID"))
@click.argument("mode", required=False, default="cli", callback=checked_id("mode"))
@click.argument("provider", required=False, callback=checked_id("provider"))
@click.option("--profile", callback=checked_id("profile"), shell_complete=completers.profiles,
              help="Agent profile (default: AGENT_ID, or AGENT_ID without a trailing -N).")
@click.option("--runtime", type=RUNTIME,
              default="process", show_default=True,
              help="Where the agent runs: a local process, a container, a Kubernetes Job.")
@click.option("--prompt", default="", help="The agent's task (Claude agents).")
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              help="Directory the agent works in (default: the project root).")
@click.option("--timeout", type=LEASE, metavar="SECONDS",
              help="Kill the agent after this long (default: the profile's).")
@click.option("--memory", help="Memory limit, e.g. 1g (container, kubernetes).")
@click.option("--cpus", type=POSITIVE, help="CPU limit.")
@click.option("--image", help="Container image (default: agent_image setting).")
@click.option("--network", help="Container network, e.g. the task's compose network.")
@click.option("--sandbox", "sandbox_mode", type=click.Choice(["strict", "permissive", "disabled"]),
              help="strict: workspace read-only, writable only /tmp and a fresh home, no "
                   "network but the provider's; permissive: the same, workspace writable; "
                   "disabled: no sandbox (logged). Default: the agent_sandbox setting. "
                   "Process and container runtimes.")
@click.option("--complexity", type=click.Choice(["low", "normal", "high"]),
              help="Task complexity, for provider routing.")
@click.option("--cost-sensitive", is_flag=True, help="Prefer COST_PROVIDER when routing.")
@click.option("--phase", callback=checked_id("phase"),
              help="Completion phase, e.g. loop3 (coord:{T}:loop3:complete).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the agent and print its record.")
@click.option("--dry-run", is_flag=True,
              help="Print what would run, secrets redacted, and start nothing (no provider "
                   "key needed): the agent's argv and environment; for kubernetes the "
                   "Secret and Job manifests.")
@json_option
@click.pass_context
def spawn_agent(ctx, agent_id, task_id, mode, provider, profile, runtime, prompt,
                workspace, timeout, memory, cpus, image, network, sandbox_mode, complexity,
                cost_sensitive, phase, wait_, dry_run, as_json) -> None:
    """Start AGENT_ID on TASK_ID under a supervisor.

    \b
    As the skill calls it: cfn spawn-agent AGENT_ID TASK_ID [MODE] [PROVIDER]
      cfn spawn-agent coder-1 T42 --prompt "Add login" --runtime container
      cfn spawn-agent tests-1 T42 --profile script -- pytest -q
    Prints the run (and with --wait its completion record: exit 0 success,
    1 failure, 3 timeout). API keys come from the environment, never argv.
    """
    from cfn.agents.spawn import SpawnRequest

    project = project_of(ctx)
    command = ctx.meta.get("trailing_argv", ())
    request = SpawnRequest(
        agent_id=agent_id, task_id=task_id, mode=mode, provider=provider, profile=profile,
        runtime=runtime, memory=memory, cpus=cpus, image=image, network=network,
        workspace=workspace, timeout=timeout, prompt=prompt, command=tuple(command),
        complexity=complexity, cost_sensitive=cost_sensitive, phase=phase,
        sandbox_mode=sandbox_mode,
    )
    if dry_run:
        from cfn.agents.runtimes.kubernetes import to_yaml
        from cfn.agents.spawn import dry_run as preview

        planned = preview(project, request)
        if as_json:
            print_json(planned.documents)
        else:
            click.echo(to_yaml(planned.documents), nl=False)
        for key_env in planned.missing_keys:
            _say_missing_key(key_env)
        return
    spawned = project.spawn(request)
    if not wait_:
        if as_json:
            print_json(spawned.to_dict())
        else:
            click.echo(f"{spawned.agent_id}\trun {spawned.run_id}\t{spawned.runtime}\t"
                       f"{spawned.provider or '-'}\t{spawned.log_path}")
        return
    # the supervisor enforces the agent's timeout; this only guards against a lost record
    _wait_and_print(ctx, task_id, {agent_id: (spawned.run_id, phase)}, defaults.AGENT_WAIT_S,
                    as_json)


def _wait_and_print(ctx, task_id: str, runs: dict[str, tuple[int, str | None]],
                    timeout: float, as_json: bool) -> None:
    """Wait for each agent's run (agent -> run ID and phase: each phase's agents complete
    in that phase's stream), all within `timeout`, announcing each as it finishes."""
    import time

    from cfn.agents.lifecycle import Waited

    project = project_of(ctx)
    project.connect()  # the wait's clock starts once Redis is reached
    deadline, waited = time.monotonic() + timeout, Waited({}, False)
    with Waiting(feedback_of(ctx), f"0 of {len(runs)} finished") as waiting:
        waiting.note(f"waiting for {len(runs)} agents of task {task_id} "
                     f"(timeout {timeout:g} s)")
        finished = _announcer(project, waiting, len(runs))
        for phase in sorted({phase for _, phase in runs.values()}, key=str):
            group = {agent: run_id for agent, (run_id, of) in runs.items() if of == phase}
            more = project.wait_agents(task_id, group, phase=phase, on_record=finished,
                                       timeout=max(0.0, deadline - time.monotonic()))
            waited = Waited({**waited.records, **more.records},
                            waited.timed_out or more.timed_out)
    if as_json:
        print_json({"records": waited.records, "timed_out": waited.timed_out})
    else:
        for agent, record in waited.records.items():
            confidence = record.get("confidence")
            click.echo(f"{agent}\t{record.get('status')}\t{_ending(record)}\t"
                       f"confidence {'-' if confidence is None else confidence}")
    if waited.timed_out:
        click.echo(f"cfn: timed out with {len(waited.records)} of {len(runs)} agents done",
                   err=True)
        ctx.exit(ExitCode.TIMEOUT)
    ctx.exit(ExitCode.OK if waited.all_succeeded else ExitCode.NEGATIVE)


def _announcer(project, waiting: Waiting, expected: int):
    """The on_record callback of a wait: says which agent finished, how, and in how long."""
    from cfn.agents import runs as agent_runs

    done: set[str] = set()

    def finished(agent: str, record: dict) -> None:
        done.add(agent)
        waiting.state = f"{len(done)} of {expected} finished"
        row = agent_runs.get(project.db, record.get("run_id") or 0)
        took = row and agent_runs.elapsed(row)
        status = record.get("status")
        why = "" if status == "success" else f" ({_reason(record)})"
        waiting.arrived(f"agent {agent} finished: {status}{why}"
                        f"{f' in {duration(took)}' if took is not None else ''}"
                        f" — {len(done)} of {expected}", status)
        if status != "success" and record.get("log_path"):
            waiting.note(f"{agent}'s output: {record['log_path']}")

    return finished


def _reason(record: dict) -> str:
    """Why a run did not succeed, on one line: its error, else its exit code."""
    said = record.get("error") or record.get("provider_error")
    if said:
        return " ".join(str(said).split())
    code = record.get("exit_code")
    return "no exit code" if code is None else f"exit {code}"


def _exit_text(code: int | None) -> str:
    """An exit code as people read it: exit 3; signal 15 (killed by it); - (none yet)."""
    if code is None:
        return "-"
    return f"exit {code}" if code >= 0 else f"signal {-code}"


def _ending(record: dict) -> str:
    """A finished run's table column: its exit code, or why it has none (a run that was
    killed, timed out or lost says so, not "exit -15" or "exit None")."""
    code = record.get("exit_code")
    return f"exit {code}" if code is not None and code >= 0 else _reason(record)


@click.command()
@click.argument("agent_type", callback=checked_id("agent type"))
@click.option("--provider", help="An explicit provider (wins over routing).")
@click.option("--complexity", type=click.Choice(["low", "normal", "high"]),
              help="Task complexity: high routes to HIGH_COMPLEXITY_PROVIDER.")
@click.option("--cost-sensitive", is_flag=True, help="Route to COST_PROVIDER.")
@json_option
@click.pass_context
def route(ctx, agent_type, provider, complexity, cost_sensitive, as_json) -> None:
    """Show which provider, endpoint and model AGENT_TYPE would get, and why (no keys shown;
    none is needed: a provider whose key is not set is named with the variable to export)."""
    import os

    from cfn import routing
    from cfn.agents import profiles

    config = config_of(ctx)
    profile = profiles.profile_for_agent(agent_type, None, config.root)
    table = config.providers
    decision = routing.select(config, os.environ, profile_provider=profile.provider,
                              explicit=provider, complexity=complexity,
                              cost_sensitive=cost_sensitive, profile_fallback=profile.fallback,
                              preview=True)
    chain = [{"provider": name, "base_url": table[name].base_url,
              "model": routing.model_for(name, profile.provider, profile.model, table),
              "key_env": table[name].key_env, "key_set": name not in decision.missing_key}
             for name in decision.chain]
    for name in decision.missing_key:
        _say_missing_key(table[name].key_env)
    if as_json:
        print_json({"agent_type": agent_type, "chain": chain, "why": list(decision.reasons),
                    "skipped_without_key": list(decision.skipped)})
        return
    click.echo(f"{agent_type}: {decision.chain[0]} ({'; '.join(decision.reasons)})")
    for step in chain:
        source = step["key_env"] or "the CLI login"
        click.echo(f"  {step['provider']}\t{step['base_url']}\t{step['model']}\t"
                   f"key from {source}{'' if step['key_set'] else ' (not set)'}")
    for name in decision.skipped:
        click.echo(f"  skipped {name}: no key in the environment")


def _say_missing_key(key_env: str) -> None:
    """On stderr: a key a spawn would need and the environment lacks."""
    click.echo(f"cfn: the provider needs its key in {key_env}, which is not set; export it "
               "before spawning", err=True)


@click.group()
def agents() -> None:
    """Agent profiles and runs: profiles, ls, logs, stop, wait."""


@agents.command()
@json_option
@click.pass_context
def profiles(ctx, as_json: bool) -> None:
    """List agent profiles (shipped, and the project's agents/*.toml)."""
    from cfn.agents import profiles as profile_module

    found = profile_module.load_all(config_of(ctx).root)
    if as_json:
        print_json({name: p.to_data() | {"source": p.source} for name, p in sorted(found.items())})
        return
    print_table(("profile", "role", "kind", "provider", "timeout"),
                [(name, p.role, p.kind, p.provider or "(routed)", f"{p.timeout:g}s")
                 for name, p in sorted(found.items())])


@agents.command(name="ls")
@click.option("--task-id", callback=checked_id("task ID"), help="Only this task.")
@click.option("--all", "all_runs", is_flag=True, help="Every run, not only each agent's latest.")
@json_option
@click.pass_context
def ls(ctx, task_id, all_runs, as_json) -> None:
    """List agent runs with their status (lost: the supervisor died)."""
    from cfn.agents import lifecycle, runs

    project = project_of(ctx)
    rows = lifecycle.with_liveness(project, runs.listing(project.db, task_id, not all_runs))
    if as_json:
        print_json(rows)
        return
    print_table(("task", "agent", "run", "status", "runtime", "provider", "exit", "took"),
                [(row["task_id"], row["agent_id"], f"run {row['id']}", row["status"],
                  row["runtime"], row["provider"] or "-", _exit_text(row["exit_code"]),
                  "-" if (took := runs.elapsed(row)) is None else duration(took))
                 for row in rows])


@agents.command()
@click.argument("agent_id", callback=checked_id("agent ID"), shell_complete=completers.agents)
@task_id_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the agent runs.")
@click.pass_context
def logs(ctx, agent_id, task_id, follow) -> None:
    """Print AGENT's captured output (its latest run)."""
    from cfn.agents import runs

    db = project_of(ctx).db
    row = runs.latest(db, task_id, agent_id)
    if row is None:
        raise NegativeOutcome(f"agent {agent_id} never ran on task {task_id}")
    path = Path(row["log_path"])
    position = 0
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if not follow:
            return
        row = runs.latest(db, task_id, agent_id)
        if row["status"] not in runs.LIVE:
            if path.exists() and path.stat().st_size > position:
                continue
            return
        time.sleep(0.2)


@agents.command()
@click.argument("agent_id", required=False, callback=checked_id("agent ID"))
@task_id_option
@click.pass_context
def stop(ctx, agent_id, task_id) -> None:
    """Stop AGENT (or every running agent of the task); each still reports its completion."""
    from cfn.agents import lifecycle

    stopping = lifecycle.stop(project_of(ctx), task_id, agent_id)
    if not stopping:  # nothing to stop is said, and is not success
        what = f"agent {agent_id} of task {task_id}" if agent_id else f"task {task_id}"
        raise NegativeOutcome(f"nothing running for {what}; `cfn agents ls --task-id "
                              f"{task_id}` shows its agents")
    for name in stopping:
        click.echo(f"stopping {name}", err=True)


@agents.command(name="wait")
@click.argument("agent_ids", nargs=-1, callback=lambda c, p, v: [checked_id("agent ID")(c, p, a)
                                                                 for a in v])
@task_id_option
@click.option("--timeout", type=SECONDS, default=3600, show_default=True,
              metavar="SECONDS", help="Stop waiting after this long (exit 3).")
@json_option
@click.pass_context
def wait(ctx, agent_ids, task_id, timeout, as_json) -> None:
    """Wait for the task's agents (or the ones named) to finish their latest runs.

    Exit 0 all succeeded, 1 any failed, 3 timed out.
    """
    from cfn.agents import runs

    rows = runs.listing(project_of(ctx).db, task_id)
    if not rows:  # a typo must not read as "all done"
        raise NegativeOutcome(f"no agent ever ran on task {task_id}; `cfn agents ls` lists "
                              "the tasks' agents")
    if agent_ids:
        rows = [row for row in rows if row["agent_id"] in agent_ids]
        missing = set(agent_ids) - {row["agent_id"] for row in rows}
        if missing:
            raise NegativeOutcome(f"never ran on task {task_id}: {', '.join(sorted(missing))}")
    _wait_and_print(ctx, task_id, {row["agent_id"]: (row["id"], row["phase"]) for row in rows},
                    timeout, as_json)
