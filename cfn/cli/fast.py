"""The fast path: the hot commands without click or redis-py.

`cfn signal send|wait`, `cfn report`, `cfn completion signal` and `cfn context store|get`
are what agents run most, often in loops, so as whole processes they must cost little
(docs/performance.md); importing redis-py alone costs more than that. This recognises
those commands' complete argument lists (options in any order, `--opt value` or
`--opt=value`, the global --redis-url), connects with the small hiredis client
(cfn.hiredis_client) and runs the same bodies (cfn.cli.hot) on the same project methods
as their click commands.

Everything else goes to the click application, the single authority on usage and help:
an argument this does not recognise or that fails its check (click then says why), a
Redis the small client does not serve (cfn.backend.connect_small), and any failure
before a command was sent to Redis. Once one was sent it is never run again: a later
failure is said here, as the click application says it. CFN_FAST_PATH=0 turns this off.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cfn import validate
from cfn.cli import hot
from cfn.cli.output import failed
from cfn.defaults import MAX_SECONDS
from cfn.errors import ExitCode
from cfn.ids import validate_id

if TYPE_CHECKING:
    from cfn.hiredis_client import Client
    from cfn.project import Project

# An option's parameter, and how its text becomes the value (None: a flag, no value).
Option = tuple[str, "Callable[[str], object] | None"]


def _id(kind: str) -> Callable[[str], str]:
    return lambda text: validate_id(text, kind)


def _timeout(text: str) -> float:
    return validate.timeout(float(text))


def _ttl(text: str) -> int:
    return validate.positive_int(int(text), "ttl", MAX_SECONDS)


def _confidence(text: str) -> float:
    return validate.fraction(float(text), "confidence")


def _status(module: str) -> Callable[[str], str]:
    """One of `module`'s STATUSES (click.Choice's check; the module is loaded anyway)."""
    return lambda text: validate.choice(text, importlib.import_module(module).STATUSES,
                                        "status")


def _result(text: str) -> object:
    return validate.json_text(text, "--result")


EVERY: dict[str, Option] = {"--task-id": ("task_id", _id("task ID")),
                            "--json": ("as_json", None)}
AGENT: dict[str, Option] = {"--agent-id": ("agent_id", _id("agent ID"))}
CHANNEL: dict[str, Option] = {"--channel": ("channel", _id("channel"))}
KEY: dict[str, Option] = {"--key": ("key", _id("context key"))}

# command words -> (body, options, defaults of the optional ones), as their click commands
# declare them; every option but a flag without a default is required
COMMANDS: dict[tuple[str, ...], tuple[Callable, dict[str, Option], dict[str, object]]] = {
    ("signal", "send"): (
        hot.signal_send,
        {**EVERY, **CHANNEL, "--payload": ("payload", str)},
        {"payload": ""}),
    ("signal", "wait"): (
        hot.signal_wait,
        {**EVERY, **CHANNEL, "--timeout": ("timeout", _timeout)},
        {"timeout": float(hot.SIGNAL_WAIT_TIMEOUT)}),
    ("report",): (
        hot.report,
        {**EVERY, **AGENT, "--status": ("status", _status("cfn.coordination.results")),
         "--confidence": ("confidence", _confidence), "--result": ("result", _result)},
        {"status": "success", "confidence": None, "result": None}),
    ("completion", "signal"): (
        hot.completion_signal,
        {**EVERY, **AGENT, "--status": ("status", _status("cfn.coordination.completion")),
         "--payload": ("payload", str), "--phase": ("phase", _id("phase"))},
        {"status": "success", "payload": None, "phase": None}),
    ("context", "store"): (
        hot.context_store,
        {**EVERY, **KEY, "--value": ("value", str), "--ttl": ("ttl", _ttl)},
        {"ttl": None}),
    ("context", "get"): (
        hot.context_get,
        {**EVERY, **KEY},
        {}),
}
COMMANDS[("barrier", "signal")] = COMMANDS[("completion", "signal")]  # their new names
COMMANDS[("results", "report")] = COMMANDS[("report",)]
GLOBAL: dict[str, Option] = {"--redis-url": ("redis_url", str)}


def serve(argv: list[str]) -> int | None:
    """Run `argv` if it is a hot command this serves, and its exit code; None otherwise,
    with nothing sent to Redis and nothing said: the click application takes it."""
    if os.environ.get("CFN_FAST_PATH") == "0":
        return None
    try:
        return _serve(argv)
    except KeyboardInterrupt:  # as click says it: a blank line closes the terminal's ^C
        print("\ncfn: aborted", file=sys.stderr)
        return 130


def _serve(argv: list[str]) -> int | None:
    try:
        command = parse(argv)
        if command is None:
            return None
        body, values, redis_url = command
        connected = _connect(redis_url)
    except Exception:  # a value that fails its check, a broken cfn.toml: click says it
        return None
    if connected is None:
        return None
    project, client = connected
    try:
        body(project, **values)
    except Exception as exc:
        return failed(exc, bool(values["as_json"])) if client.sent else None
    finally:
        project.close()
    return ExitCode.OK


def parse(argv: list[str]) -> tuple[Callable, dict[str, object], str | None] | None:
    """(body, its keyword arguments, --redis-url) of a complete, valid hot command; None
    for anything else. A value failing its check raises (ValueError, InvalidInput)."""
    flags, rest = _options(validate.text_args(argv), None, GLOBAL)
    for words, (body, options, defaults) in COMMANDS.items():
        if tuple(rest[:len(words)]) != words:
            continue
        values, extra = _options(*_task_first(rest[len(words):], options), options)
        if values is None:
            return None
        required = {name for name, convert in options.values() if convert} - set(defaults)
        if extra or not required <= set(values):
            return None
        return body, {"as_json": False, **defaults, **values}, flags.get("redis_url")
    return None


def _task_first(args: list[str], options: dict[str, Option]) -> tuple[list[str], object]:
    """The arguments less a leading positional task (`cfn signal send T ...`), and that task
    (checked as --task-id is); None when there is none."""
    if args and not args[0].startswith("-") and "--task-id" in options:
        return args[1:], options["--task-id"][1](args[0])
    return args, None


def _options(args: list[str], task: object, options: dict[str, Option]
             ) -> tuple[dict[str, object] | None, list]:
    """The leading options of `args` by parameter (as click reads them: the last of a
    repeated option wins), with `task` (a positional one) as task_id, and the arguments
    after them; None for the options when the task is given both ways. An option not in
    `options` ends them, so the caller sees it as left over; ValueError for one without
    its value."""
    values: dict[str, object] = {}
    index = 0
    while index < len(args) and args[index].startswith("-"):
        name, equals, text = args[index].partition("=")
        if name not in options:
            break
        parameter, convert = options[name]
        if convert is None:
            if equals:
                raise ValueError(f"{name} takes no value")
            values[parameter] = True
        else:
            if not equals:
                index += 1
                if index == len(args):
                    raise ValueError(f"{name} needs a value")
                text = args[index]  # whatever it looks like, as click takes it
            values[parameter] = convert(text)
        index += 1
    if task is not None:
        if "task_id" in values:
            return None, []  # given twice: click says whether they agree
        values["task_id"] = task
    return values, args[index:]


def _connect(redis_url: str | None) -> tuple[Project, Client] | None:
    """The project (configuration resolved as for any command) on the small client."""
    from cfn.backend import connect_small
    from cfn.config import resolve
    from cfn.project import Project

    config = resolve(flags={"redis_url": redis_url})
    connected = connect_small(config)
    if connected is None:
        return None
    client, url = connected
    return Project(config, client=client, url=url), client
