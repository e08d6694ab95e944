"""What a wait says on stderr while it lasts: each arrival as it comes, and that it is still
waiting. stdout stays the command's result, so scripts and --json see the same bytes.

Piped (stderr not a terminal): one plain line per event, and a heartbeat line every
defaults.PROGRESS_EVERY_S. On a terminal: the same event lines, under a live status line
(rich) redrawn in place and removed when the wait ends. Colour: --color always colours even
when piped (an explicit flag wins over NO_COLOR, as no-color.org asks); auto colours a
terminal unless NO_COLOR is set (or TERM=dumb); never, never.

This imports neither click nor rich when loaded: the fast path (cfn.cli.fast) runs
`signal wait` with plain lines only, so it stays fast and says what the click path says.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from cfn import defaults
from cfn.cli.output import duration

COLORS = ("auto", "always", "never")
_ANSI = {"success": "\033[32m", "failure": "\033[31m", None: ""}
_RESET = "\033[0m"


class Settings:
    """The global --quiet, --verbose and --color choices. (A plain class: a dataclass costs
    the fast path a millisecond to define.)"""

    def __init__(self, quiet: bool = False, verbose: bool = False, color: str = "auto"):
        self.quiet, self.verbose, self.color = quiet, verbose, color

    def colored(self, stream: TextIO) -> bool:
        if self.color != "auto":
            return self.color == "always"
        return not os.environ.get("NO_COLOR") and _terminal(stream)


def _terminal(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def progress_every_s() -> float:
    """How often a piped wait says it is still waiting: defaults.PROGRESS_EVERY_S, unless
    CFN_PROGRESS_EVERY_S says otherwise (a CI log that wants more, tests)."""
    try:
        every = os.environ.get("CFN_PROGRESS_EVERY_S", defaults.PROGRESS_EVERY_S)
        return max(0.1, float(every))
    except ValueError:
        return defaults.PROGRESS_EVERY_S


class Waiting:
    """One wait's feedback, as a context manager: `arrived` for each arrival, `state` for
    the count that the heartbeat and the status line show. Quiet, it says nothing."""

    def __init__(self, settings: Settings, state: str, *, live: bool = True,
                 stream: TextIO | None = None):
        self.settings, self.state = settings, state
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._live = None
        self._use_live = live and not settings.quiet and _terminal(self.stream)

    def __enter__(self) -> Waiting:
        if self.settings.quiet:
            return self
        if self._use_live:
            self._live = _LiveStatus(self)
        else:
            threading.Thread(target=self._beat, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._live is not None:
            self._live.stop()
        if self.settings.verbose and not self.settings.quiet:
            self.say(f"waited {self.elapsed()}: {self.state}")

    def elapsed(self) -> str:
        return duration(time.monotonic() - self.started)

    def arrived(self, text: str, outcome: str | None = None) -> None:
        """One event line; `outcome` (success, failure) colours it where colour is on."""
        self.say(text, outcome)

    def note(self, text: str) -> None:
        """A line only --verbose shows."""
        if self.settings.verbose:
            self.say(text)

    def say(self, text: str, outcome: str | None = None) -> None:
        if self.settings.quiet:
            return
        with self._lock:
            if self._live is not None:
                self._live.print(f"cfn: {text}", outcome)
                return
            colour = _ANSI.get(outcome, "") if self.settings.colored(self.stream) else ""
            self.stream.write(f"cfn: {colour}{text}{_RESET if colour else ''}\n")
            self.stream.flush()

    def _beat(self) -> None:
        every, beats = progress_every_s(), 0
        while not self._stop.wait(every):
            beats += 1  # the nominal time: the same words however the machine is loaded
            self.say(f"still waiting: {self.state} after {duration(beats * every)}")


class _LiveStatus:
    """A spinner with the wait's state and its time, redrawn in place on a terminal."""

    def __init__(self, waiting: Waiting):
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        self.waiting = waiting
        colored = waiting.settings.colored(waiting.stream)
        self.console = Console(file=waiting.stream, force_terminal=True, no_color=not colored,
                               highlight=False, color_system="auto" if colored else None)
        self.spinner = Spinner("dots", style="cyan" if colored else "")
        self.live = Live(console=self.console, transient=True, refresh_per_second=8,
                         get_renderable=self._render)
        self.live.start()

    def _render(self):
        self.spinner.update(text=f"waiting: {self.waiting.state} · {self.waiting.elapsed()}")
        return self.spinner

    def print(self, text: str, outcome: str | None) -> None:
        from rich.text import Text

        style = {"success": "green", "failure": "red"}.get(outcome or "", "")
        self.console.print(Text(text, style=style))

    def stop(self) -> None:
        self.live.stop()
