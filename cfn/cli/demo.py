"""`cfn demo`: a whole CFN Loop with no API key, on a sample project."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import click

from cfn.cli._common import json_option, print_json

CLAUDE_HINT = """\
The agents above were scripted stand-ins for LLM agents: the implementer
edits greet.py and runs the tests, the validators run the tests and a linter,
the product owner decides from the gate and the consensus. To run the same
loop with Claude Code (npm install -g @anthropic-ai/claude-code):

  export ANTHROPIC_API_KEY=...        # never pass keys as arguments
  cd {directory}
  cfn loop run --task-id greet-claude --mode mvp --epic "{epic}" \\
      --loop3-agents coder --loop2-agents code-reviewer,tester --product-owner product-owner
"""


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Where to create the sample project (default: a new temporary directory).")
@click.option("--keep-redis", is_flag=True, help="Leave the demo's embedded redis-server running.")
@json_option
@click.pass_context
def demo(ctx, directory: Path | None, keep_redis: bool, as_json: bool) -> None:
    """Run a whole CFN Loop on a sample project with no API key.

    The first iteration fails the gate; the second reaches PROCEED. On a terminal the
    loop is drawn live (as `cfn loop watch`); otherwise progress streams on stderr in
    plain lines. The project, its database and logs stay for you to read.
    """
    from cfn import embedded
    from cfn.config import resolve
    from cfn.demo.project import EPIC, create
    from cfn.loop.spec import LoopSpec
    from cfn.project import Project

    resolve(flags=ctx.find_root().obj["flags"])  # a broken setting is said before anything
    directory = (directory or Path(tempfile.mkdtemp(prefix="cfn-demo-"))).resolve()
    create(directory)
    click.echo(f"cfn demo: a CFN Loop on the sample project in {directory}, run by scripted "
               "stand-ins for LLM agents (no API key needed)", err=True)
    project = Project.open(directory, **ctx.find_root().obj["flags"])
    spec = LoopSpec(task_id="greet", epic=EPIC, mode="mvp",
                    loop3_agents=("demo-implementer",),
                    loop2_agents=("demo-tester", "demo-linter"),
                    product_owner="demo-product-owner", max_iterations=3,
                    workspace=str(directory))
    try:
        report = _watched(project, spec) if sys.stderr.isatty() else project.run_loop(spec)
    finally:
        project.close()
        if not keep_redis and not project.config.redis_url:
            embedded.stop(project.home)
    if as_json:
        print_json({**report.to_dict(), "directory": str(directory)})
    click.echo("\n" + CLAUDE_HINT.format(directory=directory, epic=EPIC), err=True)
    click.echo(f"Read it again: cd {directory} && cfn loop report greet", err=True)
    ctx.exit(report.exit_code)


def _watched(project, spec):
    """Run the loop while a second connection draws it live on stderr (the watch view);
    the progress lines it would log are left to the table."""
    import logging
    import threading

    from cfn.cli.loop_view import show
    from cfn.project import Project

    project.redis  # noqa: B018 (connected, and redis imported, before a second thread does)

    def draw() -> None:
        with Project(project.config) as watcher:  # its own connections, used in its thread
            show(watcher, spec.task_id, out=sys.stderr, live=True)

    drawing = threading.Thread(target=draw, daemon=True)
    progress = logging.getLogger("cfn.loop")
    level = progress.level
    progress.setLevel(logging.WARNING)
    drawing.start()
    try:
        return project.run_loop(spec)
    finally:
        drawing.join(timeout=5)  # it ends on the loop's last event
        progress.setLevel(level)
