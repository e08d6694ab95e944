"""The worker daemon, run for real: `cfn daemon` processes, rq consumers on the test Redis,
the real `claude` CLI against a stand-in provider on loopback, and real bubblewrap."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from standin import Standin

pytestmark = pytest.mark.usefixtures("reap_supervisors", "daemons")
needs_claude = pytest.mark.skipif(shutil.which("claude") is None,
                                  reason="needs the claude CLI (npm @anthropic-ai/claude-code)")
AUDIT_JSON = '{"vulnerabilities": [], "riskScore": 3, "recommendations": ["rotate keys"]}'


def _tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(current := todo.pop())
        todo.extend(children.get(current, []))
    return found


def kill_tree(pid: int) -> None:
    """What a machine's crash does to a daemon: it and all of its processes die at once."""
    for member in _tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def state(project: Path) -> dict | None:
    path = project / ".cfn" / "daemon" / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def daemons(project, env):
    """Whatever daemon a test started is gone after it."""
    yield
    subprocess.run([sys.executable, "-m", "cfn", "daemon", "stop"], cwd=project, env=env,
                   capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    if (left := state(project)) is not None:
        kill_tree(left["pid"])


@pytest.fixture
def provider(tmp_path):
    model = Standin(reply=AUDIT_JSON, auth="api-key").start()
    yield model
    if model.release is not None:
        model.release.set()
    model.stop()


@pytest.fixture
def claude_env(tmp_path_factory, provider):
    home = tmp_path_factory.mktemp("operator-home")  # outside the project, as homes are
    return {"HOME": str(home), "ANTHROPIC_API_KEY": "sk-ant-test-key",
            "CFN_PROVIDER_ANTHROPIC_BASE_URL": provider.url,
            "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


def worker_file(project: Path, name: str, text: str) -> None:
    (project / "workers").mkdir(exist_ok=True)
    (project / "workers" / f"{name}.toml").write_text(text)


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds}s")


def status(cfn, **kw) -> dict:
    got = cfn("daemon", "status", "--json", **kw)
    assert got.returncode in (0, 1), got.stderr
    return json.loads(got.stdout)


def trigger(cfn, *args: str, extra_env: dict | None = None, timeout: float = 240) -> dict:
    got = cfn("daemon", "trigger", *args, "--wait", "--json", "--timeout", str(timeout - 20),
              extra_env=extra_env, timeout=timeout)
    document = json.loads(got.stdout)
    assert got.returncode == (0 if document["result"]["status"] == "success" else 1), got.stderr
    return document


# --- one daemon, its lifetime ------------------------------------------------------------


def test_two_starts_give_one_daemon_and_the_second_says_where_the_first_runs(cfn, project,
                                                                              env, r):
    starts = [subprocess.Popen([sys.executable, "-m", "cfn", "daemon", "start"], cwd=project,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, stdin=subprocess.DEVNULL) for _ in range(2)]
    outcomes = [(p.wait(timeout=60), p.stderr.read()) for p in starts]
    assert sorted(code for code, _ in outcomes) == [0, 1], outcomes
    refused = next(said for code, said in outcomes if code == 1)
    pid = state(project)["pid"]
    assert f"pid {pid}" in refused and "cfn daemon stop" in refused
    found = status(cfn)
    assert found["daemon"]["pid"] == pid
    assert [d["pid"] for d in found["daemons"]] == [pid]  # one heartbeat in Redis
    assert cfn("daemon", "start").returncode == 1


def test_a_daemon_stops_itself_at_its_maximum_lifetime(cfn, project):
    assert cfn("daemon", "start", "--max-lifetime", "2").returncode == 0
    found = wait_for(lambda: (s := status(cfn))["daemon"]["running"] is False and s, 30,
                     "the daemon stopping itself")
    assert "maximum lifetime" in found["daemon"]["last_exit"]["reason"]
    assert cfn("daemon", "status").returncode == 1


def test_stop_without_a_daemon_is_said(cfn):
    got = cfn("daemon", "stop")
    assert got.returncode == 1 and "no daemon runs" in got.stderr


@pytest.mark.parametrize("args,said", [
    (("trigger", "-w", "nope"), "no worker 'nope'"),
    (("trigger", "-w", "map", "--sandbox", "open"), "'open' is not one of"),
    (("start", "--workers", "map,nope"), "no worker nope"),
    (("start", "--max-lifetime", "-1"), "-1"),
    (("start", "--no-schedule", "--no-consume"), "nothing to do"),
])
def test_bad_input_is_refused_and_nothing_is_queued_or_started(cfn, project, r, args, said):
    got = cfn("daemon", *args)
    assert got.returncode == 2 and said in got.stderr, got.stderr
    assert not [k for k in r.scan_iter("rq:*")] and state(project) is None


def test_a_broken_worker_file_is_named(cfn, project):
    worker_file(project, "map", 'interval = "often"\n')
    got = cfn("daemon", "trigger", "-w", "map")
    assert got.returncode == 2 and "workers/map.toml" in got.stderr
    assert "interval must be a number" in got.stderr


# --- the queue ------------------------------------------------------------------------------


def test_a_scheduled_worker_runs_and_status_shows_its_last_and_next_run(cfn, project):
    assert cfn("daemon", "start", "--workers", "map").returncode == 0
    found = wait_for(lambda: (s := status(cfn)) and
                     next(w for w in s["workers"] if w["name"] == "map")["last_run"] and s,
                     60, "map's scheduled run")
    row = next(w for w in found["workers"] if w["name"] == "map")
    assert row["last_run"]["status"] == "success" and row["scheduled"]
    assert 800 < row["next_in_s"] <= 900  # its interval is 15 minutes
    assert found["claude"]["available"] == (shutil.which("claude") is not None)
    table = cfn("daemon", "status", "--show-modes").stdout
    assert "map" in table and "RUNS AS" not in table  # piped: rows only
    assert any(line.startswith("map\tlocal") and "success" in line for line in table.splitlines())


def job(cfn, job_id: str, timeout: float = 120) -> dict:
    got = cfn("daemon", "job", job_id, "--wait", "--json", "--timeout", str(timeout),
              timeout=timeout + 30)
    assert got.returncode in (0, 1), got.stderr
    return json.loads(got.stdout)


def test_every_local_worker_runs_through_the_queue(cfn, project):
    (project / "app.py").write_text("import os\n\n\ndef main():\n    return os.sep\n")
    assert cfn("daemon", "start", "--no-schedule").returncode == 0
    local = ("map", "consolidate", "benchmark", "preload", "audit", "testgaps", "document",
             "predict")
    queued = {name: cfn("daemon", "trigger", "-w", name).stdout.strip() for name in local}
    for name, job_id in queued.items():
        result = job(cfn, job_id)["result"]
        assert (result["status"], result["mode"]) == ("success", "local"), (name, result)
        assert result["result"]["mode"] == "local"
    found = status(cfn)
    assert {w["name"] for w in found["workers"] if w["last_run"]} == set(local)


def test_jobs_are_taken_in_priority_order(cfn, project):
    queued = [cfn("daemon", "trigger", "-w", name).stdout.strip()
              for name in ("consolidate", "map", "audit")]  # low, normal, critical
    assert status(cfn)["queue"]["queued"] == {"critical": 1, "high": 0, "normal": 1, "low": 1}
    assert cfn("daemon", "start", "--no-schedule",
               extra_env={"CFN_DAEMON_MAX_CONCURRENT": "1"}).returncode == 0
    started = {j: job(cfn, j)["result"]["started_at"] for j in queued}
    assert sorted(queued, key=started.get) == queued[::-1]


def test_a_job_that_keeps_failing_is_retried_then_kept_as_a_dead_letter(cfn, project,
                                                                        tmp_path):
    no_engine = {"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock",
                 "CFN_DAEMON_RETRY_BACKOFF": "0,1"}
    assert cfn("daemon", "start", "--no-schedule", "--headless", "--runtime", "container",
               extra_env=no_engine).returncode == 0
    # the backoff is the enqueuer's: it is in the job
    queued = cfn("daemon", "trigger", "-w", "audit", "--headless",
                 extra_env=no_engine).stdout.strip()
    ended = job(cfn, queued)
    assert ended["status"] == "failed" and "engine" in ended["error"], ended
    assert ended["retries_left"] == 0  # it was tried again at once, then after 1 s
    found = status(cfn)
    assert [d["job_id"] for d in found["queue"]["dead_letters"]] == [queued]
    tries = [row for row in found["recent"] if row["job_id"] == queued]
    assert [row["status"] for row in tries] == ["error"] * 3
    assert found["budgets"]["runs_last_hour"] == 1  # its retry was not counted again
    assert cfn("daemon", "trigger", "-w", "map", "--wait").returncode == 0  # it carries on


# --- headless workers: the real claude CLI against the stand-in ---------------------------

HEADLESS = ("audit", "optimize", "testgaps", "document", "ultralearn", "refactor", "deepdive",
            "predict")


@needs_claude
def test_every_headless_worker_runs_claude_and_its_answer_is_judged(cfn, project, claude_env,
                                                                    provider, r):
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text('PASSWORD = "hunter2-hunter2-hunter2"\n')
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env={**claude_env, "CFN_DAEMON_RUNS_PER_HOUR": "8"}).returncode == 0
    queued = {name: cfn("daemon", "trigger", "-w", name, "--headless").stdout.strip()
              for name in HEADLESS}  # 8 headless runs: the budget allows as many an hour
    for name, job_id in queued.items():
        ended = job(cfn, job_id, timeout=240)
        result = ended["result"]
        assert (result["status"], result["mode"]) == ("success", "headless"), (name, ended)
        if name in ("audit", "ultralearn", "predict"):  # JSON workers get the parsed object
            assert result["result"] == json.loads(AUDIT_JSON)
        else:
            assert result["result"] == AUDIT_JSON  # markdown workers: the text
    bodies = json.dumps([request["body"] for request in provider.requests])
    assert "src/app.py" in bodies  # the context went with the prompt ...
    assert "hunter2-hunter2-hunter2" not in bodies  # ... with its secret masked
    models = {request["model"] for request in provider.requests if request["model"]}
    assert any("haiku" in m for m in models) and any("opus" in m for m in models), models
    recent = status(cfn)["recent"]
    assert all(row["agent_run_id"] for row in recent if row["mode"] == "headless"), \
        [row for row in recent if not row["agent_run_id"]]


@needs_claude
def test_a_json_worker_that_gets_no_json_fails_and_keeps_the_raw_answer(cfn, project,
                                                                        claude_env, provider):
    provider.reply = "I looked around and everything seems fine."
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=claude_env).returncode == 0
    ended = trigger(cfn, "-w", "audit", "--headless")
    result = ended["result"]
    assert result["status"] == "failure" and result["result"] is None
    assert "expected a JSON answer" in result["reason"]
    (row,) = [row for row in status(cfn)["recent"] if row["job_id"] == ended["job_id"]]
    assert row["output"] == provider.reply and row["result"] is None


@needs_claude
def test_a_hanging_claude_is_ended_at_its_timeout(cfn, project, claude_env, provider):
    provider.release = threading.Event()  # the provider never answers
    worker_file(project, "audit", "timeout = 5\n")
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=claude_env).returncode == 0
    started = time.monotonic()
    ended = trigger(cfn, "-w", "audit", "--headless")
    assert time.monotonic() - started < 60
    assert ended["result"]["status"] == "failure"
    assert "timed out after 5s" in ended["result"]["reason"]
    assert not _processes_of("audit-"), "the timed-out run left processes behind"


def _processes_of(agent_prefix: str) -> list[int]:
    """Processes running as an agent whose ID starts with `agent_prefix`."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if f"\0CFN_AGENT_ID={agent_prefix}".encode() in b"\0" + environ.read_bytes():
                found.append(int(environ.parent.name))
    return found


@needs_claude
def test_without_claude_headless_workers_run_their_local_versions(cfn, project, tmp_path,
                                                                  claude_env):
    bin_dir = tmp_path / "bin-without-claude"  # this machine, as if claude were not installed
    bin_dir.mkdir()
    for tool in Path("/usr/bin").iterdir():
        if tool.name != "claude":
            (bin_dir / tool.name).symlink_to(tool)
    path = f"{Path(sys.executable).parent}:{bin_dir}"
    no_claude = {**claude_env, "PATH": path}
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=no_claude).returncode == 0
    ended = trigger(cfn, "-w", "audit", "--headless")
    assert ended["result"]["mode"] == "local" and ended["result"]["status"] == "success"
    assert "not installed" in ended["result"]["reason"]
    skipped = trigger(cfn, "-w", "deepdive", "--headless")["result"]
    assert skipped["status"] == "skipped" and "no local version" in skipped["reason"]
    table = cfn("daemon", "status", "--show-modes", extra_env={"PATH": path}).stdout
    audit = next(line for line in table.splitlines() if line.startswith("audit\t"))
    assert "local: Claude Code (claude) is not installed" in audit


@needs_claude
def test_budgets_stop_headless_runs_and_status_says_why(cfn, project, claude_env, provider):
    per_hour = {**claude_env, "CFN_DAEMON_RUNS_PER_HOUR": "1"}
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=per_hour).returncode == 0
    assert trigger(cfn, "-w", "audit", "--headless")["result"]["status"] == "success"
    skipped = trigger(cfn, "-w", "audit", "--headless")["result"]
    assert skipped["status"] == "skipped"
    assert skipped["reason"].startswith("budget reached: runs per hour is 1")
    assert len([r for r in provider.requests if "/messages" in r["path"]]) >= 1
    asked = len(provider.requests)
    found = status(cfn, extra_env=per_hour)
    assert found["budgets"]["runs_last_hour"] == 1 and found["budgets"]["runs_per_hour"] == 1
    audit = next(w for w in found["workers"] if w["name"] == "audit")
    assert audit["last_run"]["status"] == "skipped"
    assert "budget reached" in cfn("daemon", "status", extra_env=per_hour).stdout
    cfn("daemon", "stop")
    no_spend = {**claude_env, "CFN_DAEMON_SPEND_PER_DAY": "0"}
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=no_spend).returncode == 0
    skipped = trigger(cfn, "-w", "optimize", "--headless")["result"]
    assert skipped["reason"].startswith("budget reached: spend per day is $0")
    assert len(provider.requests) == asked  # no provider call past a budget


@needs_claude
def test_a_killed_daemons_job_is_completed_by_another(cfn, project, claude_env, provider):
    provider.release = threading.Event()  # the first daemon's run is mid-job
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=claude_env).returncode == 0
    first = state(project)
    queued = cfn("daemon", "trigger", "-w", "audit", "--headless").stdout.strip()
    assert provider.holding.wait(90)
    asked = len(provider.requests)
    kill_tree(first["pid"])  # its machine dies: the daemon, its consumers, the run
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=claude_env).returncode == 0
    second = state(project)
    wait_for(lambda: len(provider.requests) > asked, 90, "the second daemon taking the job")
    provider.release.set()
    ended = job(cfn, queued, timeout=180)
    assert ended["result"]["status"] == "success"
    assert ended["result"]["daemon"] == second["id"] != first["id"]


@needs_claude
def test_a_strict_worker_cannot_write_the_project_or_read_home_or_state(cfn, project, tmp_path,
                                                                         claude_env, provider):
    secret = Path(claude_env["HOME"]) / "secret.txt"
    secret.write_text("operator's eyes only")
    (project / ".cfn").mkdir(exist_ok=True)
    worker_file(project, "audit", 'tools = ["Bash"]\n')
    provider.tool_calls = [
        ("Bash", {"command": f"touch {project}/written-by-worker; echo wrote"}),
        ("Bash", {"command": f"cat {secret}"}),
        ("Bash", {"command": f"ls -A {project}/.cfn | wc -l"}),
    ]
    assert cfn("daemon", "start", "--no-schedule", "--headless",
               extra_env=claude_env).returncode == 0
    ended = trigger(cfn, "-w", "audit", "--headless")
    assert ended["result"]["mode"] == "headless"
    assert not (project / "written-by-worker").exists()
    written, home, state_dir = provider.tool_results
    assert "Read-only file system" in written
    assert "operator's eyes only" not in home
    assert state_dir.strip() == "0"  # the state directory is an empty tmpfs inside
    audit = next(w for w in status(cfn)["workers"] if w["name"] == "audit")
    assert audit["last_run"]["violations"] >= 1
