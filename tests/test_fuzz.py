"""Property-based fuzzing (hypothesis) of every command, option and skill script.

Each example runs one command in-process, as `cfn` runs it (the fast path, falling back to
the click application), against the real test Redis, with one hostile value in one place:
an option, an argument, the global --redis-url or a setting's environment variable.

- Whatever the value, the exit code is a documented one (0-4) and no traceback is shown.
- A value the option cannot honour exits 2, says the same by both paths, and leaves Redis
  and the state directory as they were: nothing written, no database, no server started.

The commands and options are read from the click tree, so a new one is fuzzed without a
change here. Examples are fixed (derandomize) and bounded: the file runs in under a minute.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import click
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfn import embedded
from cfn.cli import app, fast
from cfn.errors import InvalidInput
from cfn.ids import ID_PATTERN

REPO = Path(__file__).resolve().parent.parent
CFN = str(Path(sys.executable).with_name("cfn"))  # the console script, as skills run it
START = embedded.start  # before the tripwires below replace it
T = "T1"
MAX_PAYLOAD = 64  # CFN_MAX_PAYLOAD in these tests: an oversized value is cheap to make


def fuzzing(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# --- the command tree -----------------------------------------------------------------

def leaves(command: click.Command, path: tuple[str, ...] = ()
           ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from leaves(command.get_command(ctx, name), (*path, name))
    else:
        yield path, command


COMMANDS = dict(leaves(app.cli))
HOT = set(fast.COMMANDS)
# what runs agents, containers, loops or builds if its input were wrongly accepted: fuzzed
# only with invalid values, behind tripwires (see `tripwires`)
HEAVY = {("spawn-agent",), ("loop", "run"), ("loop", "resume"), ("demo",), ("image", "build"),
         ("image", "status"), ("session", "start"), ("session", "exec"), ("session", "stop"),
         ("session", "ls"), ("worktree", "up"), ("worktree", "down"), ("redis", "start"),
         ("redis", "stop"), ("doctor",), ("health",),  # the doctor runs claude, compose
         # daemons start processes, run claude --version, wait for jobs, follow logs
         *(("daemon", verb) for verb in ("start", "stop", "status", "trigger", "job", "logs")),
         ("serve",), ("mcp", "serve")}  # servers run until stopped
# commands that read no setting (they talk to the container engine alone), so a setting's
# bad value in the environment is not theirs to refuse
NO_SETTINGS = {("session", "ls"), ("session", "stop"),  # nor do shell completion scripts
               ("completion", "bash"), ("completion", "zsh"), ("completion", "fish"),
               ("mcp", "config")}  # it prints where cfn is, reading no setting
# parameters whose size is limited by CFN_MAX_PAYLOAD
PAYLOADS = {(("signal", "send"), "payload"), (("barrier", "signal"), "payload"),
            (("context", "store"), "value"), (("results", "report"), "result")}
# a valid value for each parameter that is not a number or a choice
VALID = {"task_id": T, "task": T, "agent_id": "a1", "channel": "c", "key": "k", "value": "v",
         "name": "n", "token": "t0", "epic": "e", "agent_type": "coder", "session_id": "s1",
         "branch": "b1", "command": "true", "agent_ids": "a1", "mode": "cli",
         "provider": "anthropic", "path": "skill.md", "names": "map", "job_id": "j1",
         "server": "playwright"}


def valued(command: click.Command) -> list[click.Parameter]:
    """The parameters that take a value (flags take none)."""
    return [p for p in command.params if not getattr(p, "is_flag", False)]


def is_id(param: click.Parameter) -> bool:
    """Whether the parameter is checked against the ID pattern (its callback refuses one)."""
    if param.callback is None:
        return False
    try:
        param.callback(None, param, ("a b",) if param.nargs == -1 else "a b")
    except InvalidInput:
        return True
    return False


def valid(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, click.types._NumberRangeBase):
        return str(kind.min + 1 if kind.min_open else kind.min)  # a wait's 0 checks once
    return VALID[param.name]


def long_name(option: click.Option) -> str:
    return max(option.opts, key=len)


@dataclass(frozen=True)
class Invocation:
    """One command line: the command, its options by parameter, its positionals, the global
    --redis-url, and environment variables set for it."""

    path: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    arguments: tuple[str, ...]
    redis_url: str | None = None
    env: tuple[tuple[str, str], ...] = ()

    @classmethod
    def baseline(cls, path: tuple[str, ...]) -> Invocation:
        """Every positional and every required option with a valid value; waits at 0."""
        options, arguments = [], []
        for param in valued(COMMANDS[path]):
            if isinstance(param, click.Argument):
                arguments.append(valid(param))
            elif param.required or param.name in ("timeout", "wait"):
                options.append((param.name, valid(param)))
        return cls(path, tuple(options), tuple(arguments))

    def with_value(self, param: click.Parameter, value: str) -> Invocation:
        if isinstance(param, click.Argument):
            names = [p.name for p in valued(COMMANDS[self.path])
                     if isinstance(p, click.Argument)]
            arguments = list(self.arguments)
            arguments[names.index(param.name)] = value
            return replace(self, arguments=tuple(arguments))
        options = tuple((n, v) for n, v in self.options if n != param.name)
        return replace(self, options=(*options, (param.name, value)))

    def argv(self) -> list[str]:
        params = {p.name: p for p in COMMANDS[self.path].params}
        url = [f"--redis-url={self.redis_url}"] if self.redis_url is not None else []
        # --opt=value: a value that starts with '-' stays the option's value
        return [*url, *self.path, *self.arguments,
                *(f"{long_name(params[name])}={value}" for name, value in self.options)]


# --- hostile values ---------------------------------------------------------------------

ID_RE = re.compile(ID_PATTERN)
NOT_UTF8 = st.text(max_size=8).map(lambda s: s + "\udcff")  # how Python keeps such bytes
DEEP_JSON = st.integers(1_000, 5_000).map(lambda n: "[" * n + "]" * n)
GARBAGE_NUMBERS = st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e400", "-1e400",
                                   "one", "0x10", "1,5", "--", "∞", "1e", "2**63"])


def number_ok(kind: click.types._NumberRangeBase, text: str) -> bool:
    """Whether `text` is a number inside the type's declared bounds (what must be taken)."""
    try:
        number = int(text) if isinstance(kind, click.IntRange) else float(text)
    except ValueError:
        return False
    low = kind.min < number if kind.min_open else kind.min <= number
    high = number < kind.max if kind.max_open else number <= kind.max
    return math.isfinite(number) and low and high


def outside(kind: click.types._NumberRangeBase) -> st.SearchStrategy[str]:
    if isinstance(kind, click.IntRange):
        numbers = st.one_of(st.integers(max_value=kind.min), st.integers(min_value=kind.max),
                            st.integers(min_value=2**63 - 2, max_value=2**70))
    else:
        numbers = st.one_of(st.floats(max_value=kind.min), st.floats(min_value=kind.max),
                            st.sampled_from([math.nan, math.inf, -math.inf, 1e20, 1e300]))
    return st.one_of(numbers.map(str), GARBAGE_NUMBERS).filter(lambda t: not number_ok(kind, t))


def invalid(path: tuple[str, ...], param: click.Parameter) -> st.SearchStrategy[str]:
    """Values the parameter cannot honour."""
    kind, own = param.type, st.nothing()
    if isinstance(kind, click.Choice):
        own = st.text(max_size=20).filter(lambda s: s not in kind.choices)
    elif isinstance(kind, click.types._NumberRangeBase):
        own = outside(kind)
    elif isinstance(kind, click.Path):
        own = st.just("/nonexistent/x") if kind.exists else \
            st.just("skill.md") if not kind.file_okay else st.nothing()
    elif is_id(param):
        own = st.text(max_size=140).filter(lambda s: not ID_RE.fullmatch(s))
    elif (path, param.name) in PAYLOADS:
        own = st.text(min_size=MAX_PAYLOAD + 1, max_size=200).filter(
            lambda s: len(s.encode()) > MAX_PAYLOAD)
        if param.name == "result":
            own = st.one_of(own, DEEP_JSON, st.just("{not json"))
    return st.one_of(own, NOT_UTF8)


def anything(param: click.Parameter) -> st.SearchStrategy[str]:
    """Hostile values that may or may not be valid (a wait is kept short if it is)."""
    if isinstance(param.type, click.types._NumberRangeBase):
        numbers = st.floats(0, 0.01) if param.name in ("timeout", "wait") else st.one_of(
            st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True))
        return st.one_of(numbers.map(str), outside(param.type))
    return st.one_of(st.text(max_size=40), st.text(min_size=1000, max_size=2000), NOT_UTF8,
                     DEEP_JSON, st.from_regex(ID_PATTERN, fullmatch=True),
                     st.sampled_from(["", "-", "--", "--help", "{}", "null", "\x00", "\x1b[2J",
                                      "$(touch pwned)", "a;b", "../../etc/passwd"]))


BAD_URLS = st.one_of(
    st.text(min_size=1, max_size=30).filter(
        lambda s: not s.startswith(("redis://", "rediss://", "unix://"))),
    st.integers(65536, 10**12).map(lambda port: f"redis://localhost:{port}"),
    st.text(st.sampled_from("abcxyz-+ ."), min_size=1, max_size=6).map(
        lambda port: f"redis://localhost:{port}"),
    st.sampled_from(["notaurl", "redis://:99999999", "unix://", "redis://h/?db=x",
                     "localhost:6379", "http://localhost:6379"]),
    NOT_UTF8.map(lambda s: f"redis://{s}"),
)
# settings from the environment, with values they cannot take
BAD_ENV = st.one_of(
    st.tuples(st.sampled_from(["REDIS_URL", "REDIS_FALLBACK_1"]), BAD_URLS),
    st.tuples(st.sampled_from(["CFN_KEY_TTL", "CFN_CONNECT_TIMEOUT", "CFN_RETRIES",
                               "CFN_MAX_PAYLOAD"]),
              st.one_of(GARBAGE_NUMBERS, st.sampled_from(["-1", str(2**63), "1e20"])
                        ).filter(bool)),  # an empty variable is an unset one
    st.tuples(st.sampled_from(["CFN_SKILL_APPROVE_RISK", "CFN_SKILL_ESCALATE_RISK"]),
              st.sampled_from(["nan", "inf", "7", "-1", "high"])),
    st.tuples(st.just("CFN_AGENT_SANDBOX"), st.sampled_from(["maybe", "2"])),
    st.tuples(st.just("CFN_HOME"), st.sampled_from(["skill.md", "skill.md/.cfn"])),
)


@st.composite
def hostile(draw, path: tuple[str, ...], values) -> Invocation:
    """The command's baseline with one hostile value: in a parameter (`values(path, param)`
    gives its strategy), in --redis-url, or in a setting's environment variable."""
    base = Invocation.baseline(path)
    params = valued(COMMANDS[path])
    where = draw(st.sampled_from([*params, "--redis-url",
                                  *(["env"] if path not in NO_SETTINGS else [])]))
    if where == "--redis-url":
        return replace(base, redis_url=draw(BAD_URLS))
    if where == "env":
        return replace(base, env=(draw(BAD_ENV),))
    return base.with_value(where, draw(values(path, where)))


# --- running a command in-process -------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    code: int
    stdout: str
    stderr: str


def invoke(argv: list[str], *, fast_path: bool) -> Outcome:
    """Run one command as cfn.cli.main does, without leaving the process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            mock.patch("sys.stdin", io.StringIO("")):
        code = fast.serve(argv) if fast_path else None
        if code is None:
            code = app.run(argv)
    return Outcome(int(code), out.getvalue(), err.getvalue())


class Tripped(BaseException):
    """Invalid input reached what runs agents, containers or loops (a BaseException: no
    handler of cfn's may turn it into an exit code)."""


@pytest.fixture
def tripwires(monkeypatch):
    for target in ("cfn.project.Project.spawn", "cfn.project.Project.run_loop",
                   "cfn.demo.project.create", "cfn.images.build", "cfn.images.exists",
                   "cfn.agents.sessions.start", "cfn.agents.sessions.run",
                   "cfn.agents.sessions.stop", "cfn.worktrees.manage.up",
                   "cfn.worktrees.manage.down", "cfn.embedded.start"):
        monkeypatch.setattr(target, tripwire(target))


def tripwire(target: str):
    def tripped(*_args, **_kwargs):
        raise Tripped(target)

    return tripped


@pytest.fixture
def place(project, redis_url, r, monkeypatch):
    """This test's project as the current directory, on the test Redis, with a small payload
    limit; its state directory is made by whatever command first needs it."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CFN_HOME", str(project / ".cfn"))
    monkeypatch.setenv("CFN_MAX_PAYLOAD", str(MAX_PAYLOAD))
    (project / "skill.md").write_text("# a skill\n")
    yield project
    embedded.stop(project / ".cfn")


@pytest.fixture
def raw(redis_socket) -> redis.Redis:
    """A client that reads values as bytes (DUMP), on the test server."""
    client = redis.Redis(unix_socket_path=str(redis_socket))
    yield client
    client.close()


def redis_state(client: redis.Redis) -> dict[bytes, bytes]:
    return {key: client.dump(key) for key in client.scan_iter()}


def files(home: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(home.rglob("*")) if p.is_file()} if home.exists() else {}


def assert_no_traceback(got: Outcome, argv: list[str]) -> None:
    assert got.code in (0, 1, 2, 3, 4), (argv, got)
    assert "Traceback" not in got.stderr and "internal error" not in got.stderr, (argv, got)


def run_with(invocation: Invocation, *, fast_path: bool) -> Outcome:
    with mock.patch.dict(os.environ, dict(invocation.env)):
        return invoke(invocation.argv(), fast_path=fast_path)


# --- the properties ---------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_number_an_option_takes_is_bounded_and_finite(path):
    """What the fuzzing below relies on to know which numbers are invalid."""
    for param in valued(COMMANDS[path]):
        kind = param.type
        if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
            assert isinstance(kind, click.types._NumberRangeBase), param.name
            assert kind.min is not None and kind.max is not None, param.name
            with pytest.raises(click.BadParameter):
                kind.convert("nan", param, None)


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_what_an_option_cannot_honour_exits_2_and_changes_nothing(
        path, place, raw, tripwires):
    home = place / ".cfn"

    @fuzzing(80)
    @given(hostile(path, invalid))
    def check(invocation: Invocation) -> None:
        before = redis_state(raw), files(home)
        said = []
        for fast_path in ((True, False) if path in HOT else (False,)):
            got = run_with(invocation, fast_path=fast_path)
            assert_no_traceback(got, invocation.argv())
            assert got.code == 2 and got.stdout == "", (invocation.argv(), got)
            assert (redis_state(raw), files(home)) == before, invocation.argv()
            said.append(got.stderr)
        assert len(set(said)) == 1, said  # the fast path leaves it to click, which says it
        assert not embedded.status(home).running

    check()


SAFE = sorted(set(COMMANDS) - HEAVY)


@pytest.mark.parametrize("path", SAFE, ids=" ".join)
def test_whatever_the_value_the_exit_code_is_documented_and_no_traceback(path, place, raw):
    @fuzzing(50)
    @given(hostile(path, lambda _path, param: anything(param)))
    def check(invocation: Invocation) -> None:
        before = redis_state(raw)
        first = run_with(invocation, fast_path=True)
        assert_no_traceback(first, invocation.argv())
        if first.code == 2 and path in HOT:  # refused: the same, whichever path parsed it
            assert redis_state(raw) == before
            assert run_with(invocation, fast_path=False) == first, invocation.argv()

    check()


def test_bad_input_in_a_fresh_project_starts_no_server_and_creates_nothing(
        project, monkeypatch, tripwires):
    """No Redis configured: the embedded server would start (and .cfn appear) on first use."""
    monkeypatch.chdir(project)
    monkeypatch.setenv("CFN_MAX_PAYLOAD", str(MAX_PAYLOAD))
    (project / "skill.md").write_text("# a skill\n")
    monkeypatch.setattr("cfn.embedded.start", START)  # not tripped: observed
    paths = st.sampled_from(sorted(COMMANDS))

    @fuzzing(300)
    @given(paths.flatmap(lambda path: hostile(path, invalid)))
    def check(invocation: Invocation) -> None:
        if dict(invocation.env).keys() & {"REDIS_URL", "CFN_HOME"}:
            return  # those say where state goes; the test above covers them
        got = run_with(invocation, fast_path=True)
        created = forget(project / ".cfn")
        assert_no_traceback(got, invocation.argv())
        assert got.code == 2, (invocation.argv(), got)
        assert not created, invocation.argv()

    check()


def forget(home: Path) -> bool:
    """Whether `home` exists; removed (its server stopped), so the next example starts fresh."""
    if not home.exists():
        return False
    embedded.stop(home)
    shutil.rmtree(home)
    return True


# --- the skills' scripts ------------------------------------------------------------------

SCRIPTS = {
    "signal.sh": ["send", "--task-id", T, "--channel", "c"],
    "store-context.sh": ["--task-id", T, "--key", "k", "--value", "v"],
    "collect-results.sh": ["--task-id", T, "--expected", "1", "--threshold", "1",
                           "--timeout", "0"],
    "orchestrate.sh": ["--task-id", T, "--epic", "e"],
    "spawn-agent.sh": ["a1", T],
}
SCRIPT_HOSTILE = st.sampled_from([
    ("--task-id", b"T\xff"), ("--task-id", "$(touch pwned)"), ("--task-id", "a;touch pwned"),
    ("--task-id", "x" * 200), ("--timeout", "1e20"), ("--timeout", "nan"),
    ("--threshold", "inf"), ("--ttl", str(2**63)), ("--json", "`touch pwned`"),
])


def test_the_skills_scripts_refuse_hostile_arguments_with_exit_2(project, env, r):
    scripts = {path.name: path for path in (REPO / "skills").glob("*/*.sh")}
    assert scripts.keys() == SCRIPTS.keys()  # a new script gets its baseline here

    @fuzzing(25)
    @given(st.sampled_from(sorted(SCRIPTS)), SCRIPT_HOSTILE)
    def check(name: str, change: tuple[str, str | bytes]) -> None:
        option, value = change
        args = [*SCRIPTS[name], option, value]
        got = subprocess.run(["bash", str(scripts[name]), *args], cwd=project,
                             env={**env, "CFN_BIN": CFN}, capture_output=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        stderr = got.stderr.decode(errors="replace")
        assert got.returncode == 2, (name, args, stderr)
        assert "Traceback" not in stderr and "internal error" not in stderr
        assert r.dbsize() == 0 and not (project / "pwned").exists()

    check()
