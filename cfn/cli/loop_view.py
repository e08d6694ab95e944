"""Showing a loop as it runs: a redrawn table on a terminal (rich Live), one plain line per
event anywhere else. `cfn loop watch` and `cfn demo` share it."""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING

from cfn.loop.scoring import plural

if TYPE_CHECKING:
    from rich.console import RenderableType

    from cfn.loop.view import IterationView, LoopView
    from cfn.project import Project


def duration(seconds: float | None) -> str:
    """Readable: 0.4s, 12.3s, 2m05s, 1h02m."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}" if 0 < value < 0.01 else f"${value:.2f}"


def score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def verdict(data: dict, threshold: float | None, passed: str, failed: str) -> str:
    """'failed: mean confidence 0.50 < 0.70', the threshold added when the why lacks it."""
    why = str(data.get("why"))
    against = "" if threshold is None or f"{threshold:.2f}" in why else \
        f" (threshold {threshold:.2f})"
    return f"{passed if data.get('passed') else failed}: {why}{against}"


def show(project: Project, task_id: str, *, out: IO, live: bool) -> LoopView:
    """Follow the loop until it ends (or its orchestrator is gone), drawing it on `out`:
    redrawn in place when `live`, else one plain line per event. Returns the last picture."""
    from cfn.loop.view import describe, watch

    if not live:
        view = None
        for picture, event in watch(project, task_id):
            view = picture
            if event is not None:
                print(f"{time.strftime('%H:%M:%S', time.localtime(event.at))} "
                      f"{describe(task_id, event.kind, event.iteration, event.data)}",
                      file=out, flush=True)
        return view
    from rich.console import Console
    from rich.live import Live

    console = Console(file=out)
    view = None
    with Live(console=console, auto_refresh=False, transient=False) as screen:
        for view, _event in watch(project, task_id):
            screen.update(render(view), refresh=True)
    return view


def render(view: LoopView) -> RenderableType:
    """The loop as a table of iterations x agents, then each iteration's verdicts."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    table = Table(show_edge=False, pad_edge=False)
    for name, justify in (("#", "right"), ("agent", "left"), ("phase", "left"),
                          ("status", "left"), ("elapsed", "right"), ("tokens", "right"),
                          ("cost", "right"), ("conf.", "right"), ("model", "left")):
        table.add_column(name, justify=justify, no_wrap=True,  # the agent's name gives way
                         min_width=None if name in ("agent", "model") else len(name))
    verdicts = []
    for number in sorted(view.iterations):
        it = view.iterations[number]
        for agent in it.agents.values():
            table.add_row(str(number), agent.agent, agent.phase, _status(agent.status),
                          duration(agent.elapsed(now)),
                          "-" if agent.tokens is None else f"{agent.tokens:,}",
                          usd(agent.cost_usd), score(agent.confidence),
                          "/".join(p for p in (agent.provider, agent.model) if p) or "-")
        table.add_section()
        verdicts += [Text(f"#{number} {line}") for line in _verdicts(view, it)]
    return Group(Text(_headline(view), style="bold"), table, *verdicts, Text(_footer(view)))


def _status(status: str) -> str:
    colour = {"success": "green", "failure": "red", "timeout": "red", "lost": "red",
              "running": "yellow", "starting": "yellow"}.get(status, "")
    return f"[{colour}]{status}[/]" if colour else status


def _verdicts(view: LoopView, it: IterationView) -> list[str]:
    lines = []
    if it.gate is not None:
        lines.append("gate: " + verdict(it.gate, view.gate, "passed", "failed"))
    if it.consensus is not None:
        lines.append("consensus: " + verdict(it.consensus, view.consensus, "reached",
                                             "not reached"))
    if it.decision:
        lines.append(f"decision: {it.decision} ({it.reason})")
    return lines


def _headline(view: LoopView) -> str:
    budget = "" if view.budget_usd is None else f" of {usd(view.budget_usd)}"
    limit = "" if view.max_iterations is None else f" of {view.max_iterations}"
    return (f"{view.task_id} ({view.mode}): iteration {max(view.iterations, default=0)}{limit}, "
            f"cost {usd(view.cost_usd)}{budget}")


def _footer(view: LoopView) -> str:
    if view.gone:
        return (f"orchestrator gone; resume with `cfn loop resume {view.task_id}`")
    if view.ended:
        return f"{view.ended}: {view.reason} ({plural(len(view.iterations), 'iteration')})"
    return "running…"
