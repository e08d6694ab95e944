"""The click application: every command, and the single authority on usage and help.

Subcommands load lazily so each command imports only what it needs; errors
are converted to exit codes once, in `run`. cfn.cli.main comes here for anything the
fast path (cfn.cli.fast) does not serve.
"""

from __future__ import annotations

import importlib
import json
import sys

import click

from cfn import validate
from cfn.cli import examples
from cfn.cli.feedback import COLORS, Settings
from cfn.cli.output import failed
from cfn.config import check_flags
from cfn.errors import ExitCode
from cfn.exit import leave

# command name -> (module, attribute); loaded on first use
COMMANDS = {
    "config": ("cfn.cli.config", "config"),
    "redis": ("cfn.cli.redis_server", "redis_group"),
    "context": ("cfn.cli.context", "context"),
    "signal": ("cfn.cli.signal", "signal"),
    "results": ("cfn.cli.results", "results_group"),
    "report": ("cfn.cli.results", "report"),
    "collect-results": ("cfn.cli.results", "collect_results"),
    "barrier": ("cfn.cli.completion", "completion"),
    "completion": ("cfn.cli.shell", "completion"),
    "lock": ("cfn.cli.lock", "lock"),
    "decision": ("cfn.cli.decision", "decision"),
    "history": ("cfn.cli.history", "history"),
    "db": ("cfn.cli.db", "db"),
    "skills": ("cfn.cli.skills", "skills"),
    "token": ("cfn.cli.token", "token"),
    "spawn-agent": ("cfn.cli.agents", "spawn_agent"),
    "agents": ("cfn.cli.agents", "agents"),
    "route": ("cfn.cli.agents", "route"),
    "session": ("cfn.cli.session", "session"),
    "loop": ("cfn.cli.loop", "loop"),
    "demo": ("cfn.cli.demo", "demo"),
    "worktree": ("cfn.cli.worktree", "worktree"),
    "image": ("cfn.cli.image", "image"),
    "doctor": ("cfn.cli.doctor", "doctor"),
    "daemon": ("cfn.cli.daemon", "daemon"),
    "serve": ("cfn.cli.serve", "serve"),
    "mcp": ("cfn.cli.mcp", "mcp_group"),
    "health": ("cfn.cli.doctor", "doctor"),
}


# the top-level help's sections, in order; every command is in one
SECTIONS = {
    "Start here": ("demo", "doctor", "config"),
    "Loop": ("loop", "decision", "history"),
    "Coordination": ("context", "signal", "results", "barrier", "lock"),
    "Agents": ("spawn-agent", "agents", "route", "session", "image", "token", "skills"),
    "Worktrees": ("worktree",),
    "Background workers": ("daemon",),
    "Portal": ("serve", "mcp"),
    "Admin": ("redis", "db", "completion"),
}
# names that work and are not listed: for the design documents' scripts and the skills
ALIASES = {"health": "doctor", "report": "results report", "collect-results": "results collect"}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) - set(ALIASES))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands by section (loading each one's help: only --help pays for that)."""
        for section, names in SECTIONS.items():
            rows = [(name, self.get_command(ctx, name).get_short_help_str(70))
                    for name in names]
            with formatter.section(section):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attribute = COMMANDS[name]
        command = getattr(importlib.import_module(module), attribute)
        examples.add(command, ALIASES.get(name, name))
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--redis-url",
    metavar="URL",
    help="Redis to use (overrides CFN_REDIS_URL/REDIS_URL and cfn.toml). "
    "Default: the project's embedded redis-server.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr while waiting.")
@click.option("-v", "--verbose", is_flag=True, help="More progress on stderr while waiting.")
@click.option("--color", type=click.Choice(COLORS), default="auto", show_default=True,
              help="Colour stderr: auto (a terminal, unless NO_COLOR is set), always, never.")
@click.version_option(package_name="cfn")
@click.pass_context
def cli(ctx: click.Context, redis_url: str | None, quiet: bool, verbose: bool,
        color: str) -> None:
    """Coordinate AI coding agents through Redis.

    \b
    Exit codes: 0 ok, 1 negative outcome (quorum not met, missing key),
    2 bad input, 3 timed out, 4 Redis unreachable or refused us.
    Set CFN_DEBUG=1 to see tracebacks.
    """
    flags = {"redis_url": redis_url}
    check_flags(flags)  # even a command that never connects refuses a malformed one
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose contradict each other; give one")
    ctx.obj = {"flags": flags, "feedback": Settings(quiet, verbose, color)}


def _log_to_stderr() -> None:
    """The library logs (progress, fallbacks, servers it started); a command shows them
    on stderr, keeping stdout for data."""
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cfn")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI, turn every outcome into an exit code, and leave at once."""
    _log_to_stderr()
    leave(run(argv))


def _suggest(exc: click.ClickException) -> None:
    """"Did you mean" for an unknown top-level command too: click suggests from the
    commands a group has registered, and the lazy group registers none."""
    import difflib

    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.exceptions.NoSuchCommand) and not exc.possibilities and ctx:
        exc.possibilities = difflib.get_close_matches(exc.command_name,
                                                      ctx.command.list_commands(ctx))


def run(argv: list[str] | None = None) -> int:
    """Run one command; its exit code (errors are said on stderr, once, here)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        validate.text_args(args)
        # without standalone mode click returns ctx.exit()'s code instead of raising it
        code = cli.main(args=args, prog_name="cfn", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        _suggest(exc)
        exc.show()
        code = ExitCode.USAGE if isinstance(exc, click.UsageError) else exc.exit_code
        if "--json" in args:
            print(json.dumps({"error": exc.format_message(), "exit_code": int(code)}))
        return code
    except click.Abort:
        print("cfn: aborted", file=sys.stderr)
        return 130
    except Exception as exc:
        return failed(exc, as_json="--json" in args)
    return code if isinstance(code, int) else ExitCode.OK
