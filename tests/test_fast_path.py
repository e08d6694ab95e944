"""The fast path (cfn/cli/fast.py) serves the hot commands without click or redis-py, and
says and does exactly what the click application does: each case runs the real `cfn`
console script both ways against the real test server and compares stdout, stderr, exit
code and what is left in Redis. Each run lists its imports (PYTHONPROFILEIMPORTTIME), which
shows which path served it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cfn import embedded
from cfn.coordination import agents, results

CFN = Path(sys.executable).with_name("cfn")  # the console script, as users and skills run it
SLOW = {"click", "redis"}  # what the fast path never imports


def imports_and_rest(stderr: str) -> tuple[set[str], str]:
    """The top-level packages a run imported, and its stderr without the import lines."""
    packages, rest = set(), []
    for line in stderr.splitlines(keepends=True):
        if line.startswith("import time:"):
            packages.add(line.rsplit("|", 1)[1].strip().split(".")[0])
        else:
            rest.append(line)
    return packages, "".join(rest)


class Run:
    def __init__(self, done: subprocess.CompletedProcess):
        self.code, self.stdout = done.returncode, done.stdout
        self.imported, self.stderr = imports_and_rest(done.stderr)

    @property
    def served_fast(self) -> bool:
        return not self.imported & SLOW


@pytest.fixture
def run(project, env):
    """Run the console script, by the fast path (fast=True) or with CFN_FAST_PATH=0."""
    assert CFN.is_file(), f"no console script at {CFN}"

    def run(*args: str, fast: bool, extra_env: dict | None = None) -> Run:
        done = subprocess.run(
            [str(CFN), *args], cwd=project, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL,
            env={**env, **(extra_env or {}), "CFN_FAST_PATH": "1" if fast else "0",
                 "PYTHONPROFILEIMPORTTIME": "1"})
        return Run(done)

    return run


def snapshot(r) -> tuple[dict, dict, dict]:
    """What a run left in Redis: each key's type and contents (a stream's fields in order),
    each key's TTL, and each stream's entry IDs (which differ between runs)."""
    contents, ttls, ids = {}, {}, {}
    for key in sorted(r.scan_iter()):
        kind = r.type(key)
        if kind == "stream":
            entries = r.xrange(key)
            contents[key] = (kind, [fields for _, fields in entries])
            ids[key] = [entry_id for entry_id, _ in entries]
        elif kind == "zset":  # waiters, named at random
            contents[key] = (kind, r.zcard(key))
        elif kind == "hash":  # cfn:failover, whose server ID is made at random
            contents[key] = (kind, sorted(r.hkeys(key)))
        else:
            contents[key] = (kind, r.lrange(key, 0, -1) if kind == "list" else r.get(key))
        ttls[key] = r.ttl(key)
    # a send's or an append's marker is named after a random ID made anew by each run (the
    # fault suite proves what markers do); both paths leave one per write
    markers = [k.rsplit(":", 1)[0] for k in contents if ":sent:" in k]
    for found in (contents, ttls):
        for key in [k for k in found if ":sent:" in k]:
            del found[key]
    ids["markers"] = sorted(markers)
    return contents, ttls, ids


def both(run, r, *args: str, setup=None, extra_env: dict | None = None,
         fast_served: bool = True) -> tuple[Run, tuple]:
    """Run `args` by the fast path and by click, each from the same Redis state (`setup` on
    an empty server); assert they said and left the same; the fast run and its state."""
    seen = []
    for fast in (True, False):
        r.flushall()
        if setup:
            setup()
        got = run(*args, fast=fast, extra_env=extra_env)
        seen.append((got, snapshot(r)))
    (quick, quick_state), (full, full_state) = seen
    assert quick.served_fast is fast_served, quick.imported & SLOW
    assert not full.served_fast  # CFN_FAST_PATH=0 did go through click
    assert (quick.code, quick.stderr) == (full.code, full.stderr)
    assert _without_ids(quick.stdout) == _without_ids(full.stdout)
    assert quick_state[0] == full_state[0]
    assert quick_state[2]["markers"] == full_state[2]["markers"]
    assert quick_state[1].keys() == full_state[1].keys()
    for key, ttl in quick_state[1].items():
        assert abs(ttl - full_state[1][key]) <= 2, (key, ttl, full_state[1][key])
    for got, (_, _, ids) in seen:  # an --json entry_id is the entry written
        for entry in re.findall(r'"entry_id": "([0-9-]+)"', got.stdout):
            assert entry in [i for key, stream in ids.items() if key != "markers"
                             for i in stream]
    return quick, quick_state


def _without_ids(stdout: str) -> str:
    return re.sub(r'"entry_id": "[0-9]+-[0-9]+"', '"entry_id": "<id>"', stdout)


# --- each hot command, served fast, as click serves it ------------------------------------

SEND = ("signal", "send", "--task-id", "T", "--channel", "c")


@pytest.mark.parametrize("args", [
    (*SEND, "--payload", '{"go": true}'),
    (*SEND, "--payload", '{"go": true}', "--json"),
    ("signal", "send", "--json", "--channel=c", "--payload=x=y", "--task-id=T"),
    ("signal", "send", "T", "--channel", "c", "--payload", "the task as an argument"),
    (*SEND,),  # the default payload
    (*SEND, "--payload", "--json"),  # a value that looks like an option is the value
    (*SEND, "--payload", "first", "--payload", "héllo\twörld"),  # the last one wins
], ids=["plain", "json", "any-order-and-equals", "task-argument", "default", "dashes",
        "repeated"])
def test_signal_send(run, r, args):
    quick, (contents, ttls, _) = both(run, r, *args)
    assert quick.code == 0 and contents["coord:{T}:signal:c"][0] == "list"
    assert 0 < ttls["coord:{T}:signal:c"] <= 7 * 24 * 3600


@pytest.mark.parametrize("extra", [(), ("--json",), ("--timeout=2",)])
def test_signal_wait_takes_the_oldest(run, r, extra):
    def queued():
        r.rpush("coord:{T}:signal:c", "one\x1b[31m red", "two")

    quick, (contents, _, _) = both(run, r, "signal", "wait", "--task-id", "T", "--channel", "c",
                                   *extra, setup=queued)
    printed = json.loads(quick.stdout)["payload"] if "--json" in extra else quick.stdout[:-1]
    assert printed == "one\x1b[31m red"  # data comes out as it went in
    # the waiter stays listed for a lease after taking it (a late move would be put back)
    assert contents == {"coord:{T}:signal:c": ("list", ["two"]),
                        "coord:{T}:signal:c:waiters": ("zset", 1)}


@pytest.mark.parametrize("timeout", ["0", "0.3"])
def test_signal_wait_times_out_with_exit_3(run, r, timeout):
    quick, _ = both(run, r, "signal", "wait", "--task-id", "T", "--channel", "c",
                    "--timeout", timeout)
    assert quick.code == 3 and "no signal" in quick.stderr


@pytest.mark.parametrize("extra", [
    (),
    ("--json", "--status", "failure"),
    ("--confidence", "0.75", "--result", '{"files": ["a.py"], "n": 1}', "--json"),
    ("--result=null", "--confidence=1"),
])
@pytest.mark.parametrize("name", [("results", "report"), ("report",)])  # new and old names
def test_report(run, r, extra, name):
    quick, (contents, _, _) = both(run, r, *name, "--task-id", "T", "--agent-id", "a1",
                                   *extra)
    assert quick.code == 0 and contents["coord:{T}:results"][1][0]["agent"] == "a1"


def test_a_report_run_as_its_agent_is_signed_the_same_way(run, r):
    token = "token-of-a1"
    quick, (contents, _, _) = both(run, r, "report", "--task-id", "T", "--agent-id", "a1",
                                   "--confidence", "0.5",
                                   extra_env={"CFN_AGENT_ID": "a1", "CFN_TOKEN": token})
    (fields,) = contents["coord:{T}:results"][1]
    assert fields["sig"] == results.signature(token, "T", fields)
    r.flushall()
    assert run("report", "--task-id", "T", "--agent-id", "a1", fast=True,
               extra_env={"CFN_AGENT_ID": "a1", "CFN_TOKEN": token}).code == 0
    assert results.latest_signed(r, "T", "a1", token) is not None


@pytest.mark.parametrize("extra", [
    (),
    ("--phase", "loop3", "--payload", "done", "--json"),
    ("--status=failure", "--phase=loop2"),
])
@pytest.mark.parametrize("name", ["barrier", "completion"])  # its name, and its old one
def test_completion_signal(run, r, extra, name):
    quick, (contents, _, _) = both(run, r, name, "signal", "--task-id", "T",
                                   "--agent-id", "a1", *extra)
    assert quick.code == 0 and len(contents) == 1


@pytest.mark.parametrize("extra", [(), ("--ttl", "120", "--json"), ("--json",)])
def test_context_store(run, r, extra):
    quick, (contents, ttls, _) = both(run, r, "context", "store", "--task-id", "T", "--key",
                                      "k", "--value", '["a.py"]', *extra)
    assert contents == {"context:{T}:k": ("string", '["a.py"]')}
    assert (ttls["context:{T}:k"] > 0) == ("120" in extra)


@pytest.mark.parametrize("extra", [(), ("--json",)])
def test_context_get(run, r, extra):
    quick, _ = both(run, r, "context", "get", "--key", "k", "--task-id", "T", *extra,
                    setup=lambda: r.set("context:{T}:k", "value\nwith two lines"))
    assert quick.code == 0 and "two lines" in quick.stdout


def test_a_missing_context_key_exits_1(run, r):
    quick, _ = both(run, r, "context", "get", "--task-id", "T", "--key", "none")
    assert quick.code == 1 and "no context key" in quick.stderr


def test_the_global_redis_url_flag(run, r, redis_url):
    quick, _ = both(run, r, "--redis-url", redis_url, *SEND, "--payload", "p",
                    extra_env={"REDIS_URL": "redis://127.0.0.1:1"})
    assert quick.code == 0


# --- failures: said the same way ------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("signal", "send", "--task-id", "bad id", "--channel", "c"),
    (*SEND, "--payload", "x" * 64),  # over CFN_MAX_PAYLOAD below
    ("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "-1"),
    ("report", "--task-id", "T", "--agent-id", "a1", "--result", "{not json"),
    ("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "2"),
    ("report", "--task-id", "T", "--agent-id", "a1", "--status", "maybe"),
    ("context", "store", "--task-id", "T", "--key", "k", "--value", "v", "--ttl", "0"),
    ("context", "store", "--task-id", "T", "--key", "k", "--value", "v", "--ttl", "1.5"),
], ids=["bad-id", "oversized", "negative-timeout", "bad-json", "confidence", "status",
        "ttl-0", "ttl-float"])
def test_bad_input_exits_2_and_writes_nothing(run, r, args):
    quick, (contents, _, _) = both(run, r, *args, extra_env={"CFN_MAX_PAYLOAD": "32"},
                                   fast_served=False)
    assert quick.code == 2 and contents == {}


@pytest.mark.parametrize("args", [
    ("signal", "send", "--help"),
    ("signal", "send", "--task-id", "T"),  # --channel missing
    (*SEND, "--colour", "red"),
    (*SEND, "extra"),
    (*SEND, "--json=yes"),
    (*SEND, "--payload"),
    ("--version",),
])
def test_anything_else_is_for_click(run, r, args):
    quick, _ = both(run, r, *args, fast_served=False)
    assert quick.code in (0, 2)


def test_an_unreachable_redis_exits_4_as_click_says_it(run, r, tmp_path):
    gone = {"REDIS_URL": f"unix://{tmp_path}/gone.sock", "CFN_RETRIES": "0"}
    quick, _ = both(run, r, *SEND, extra_env=gone, fast_served=False)
    assert quick.code == 4 and "cannot reach Redis" in quick.stderr


@pytest.mark.parametrize("args,setup", [
    (SEND, lambda r: r.set("coord:{T}:signal:c", "a string")),
    (("signal", "wait", "--task-id", "T", "--channel", "c", "--timeout", "0"),
     lambda r: r.set("coord:{T}:signal:c", "a string")),
    (("context", "get", "--task-id", "T", "--key", "k"),
     lambda r: r.rpush("context:{T}:k", "a list")),
    (("report", "--task-id", "T", "--agent-id", "a1"),
     lambda r: r.lpush("coord:{T}:results", "as the seed's bash did")),
], ids=["send", "wait", "get", "report"])
def test_a_key_of_the_wrong_type_exits_2(run, r, args, setup):
    quick, (contents, _, _) = both(run, r, *args, setup=lambda: setup(r))
    assert quick.code == 2 and "WRONGTYPE" in quick.stderr and "docs/keys.md" in quick.stderr
    assert len(contents) == 1  # the key as it was


@pytest.fixture
def agent_user(r):
    """An agent's Redis ACL user on task T, as spawning gives it (REDIS_USERNAME/PASSWORD)."""
    user = agents.create_user(r, "T", "a1")
    yield {"REDIS_USERNAME": user.username, "REDIS_PASSWORD": user.password}
    agents.delete_user(r, user.username)


@pytest.mark.parametrize("args", [
    (*SEND, "--payload", "p", "--json"),
    ("context", "store", "--task-id", "T", "--key", "k", "--value", "v"),
    ("report", "--task-id", "T", "--agent-id", "a1", "--confidence", "0.9"),
], ids=["send", "store", "report"])
def test_an_agent_acl_user_is_served(run, r, agent_user, args):
    quick, (contents, _, _) = both(run, r, *args, extra_env=agent_user)
    assert quick.code == 0 and len([k for k in contents if ":sent:" not in k]) == 1


@pytest.mark.parametrize("args", [
    ("completion", "signal", "--task-id", "T", "--agent-id", "a1"),  # the trusted side's
    (*SEND[:3], "other", *SEND[4:]),  # another task's key
], ids=["completion", "other-task"])
def test_an_agent_acl_user_is_refused_the_same_way(run, r, agent_user, args):
    quick, (contents, _, _) = both(run, r, *args, extra_env=agent_user)
    assert quick.code == 4 and "ACL does not allow" in quick.stderr and contents == {}


def test_a_wrong_password_is_said_by_click(run, r, agent_user):
    quick, _ = both(run, r, *SEND, fast_served=False,
                    extra_env={**agent_user, "REDIS_PASSWORD": "wrong", "CFN_RETRIES": "0"})
    assert quick.code == 4 and "wrong" not in quick.stderr


# --- which path serves ----------------------------------------------------------------------

def test_python_m_cfn_takes_the_fast_path_too(project, env, r):
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "cfn", *SEND], cwd=project,
                          env=env, capture_output=True, text=True, timeout=60)
    packages, rest = imports_and_rest(done.stderr)
    assert (done.returncode, rest) == (0, "")
    assert "hiredis" in packages and not packages & SLOW
    assert r.lrange("coord:{T}:signal:c", 0, -1) == [""]


def test_the_embedded_server_is_used_once_it_runs(run, project, env):
    home = project / ".cfn"
    bare = {k: v for k, v in env.items() if k != "REDIS_URL"}
    try:
        first = Run(subprocess.run([str(CFN), *SEND, "--payload", "hello"], cwd=project,
                                   env={**bare, "PYTHONPROFILEIMPORTTIME": "1"},
                                   capture_output=True, text=True, timeout=60))
        assert first.code == 0 and not first.served_fast  # click's path started it
        assert "started embedded redis-server" in first.stderr
        second = Run(subprocess.run([str(CFN), "signal", "wait", "--task-id", "T",
                                     "--channel", "c", "--timeout", "5"], cwd=project,
                                    env={**bare, "PYTHONPROFILEIMPORTTIME": "1"},
                                    capture_output=True, text=True, timeout=60))
        assert (second.code, second.stdout, second.stderr) == (0, "hello\n", "")
        assert second.served_fast
    finally:
        embedded.stop(home)


def test_a_fallback_configured_goes_to_click(run, r, redis_url):
    quick, _ = both(run, r, *SEND, extra_env={"REDIS_FALLBACK_1": redis_url},
                    fast_served=False)
    assert quick.code == 0
