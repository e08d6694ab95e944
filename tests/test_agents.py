"""Spawning real agents on the process runtime, under real supervisors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cfn import keys

pytestmark = pytest.mark.usefixtures("reap_supervisors")


def spawn(cfn, agent, task, *command, extra=(), env=None):
    got = cfn("spawn-agent", agent, task, "--profile", "script", "--json", *extra, "--",
              *command, extra_env=env)
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def wait(cfn, task, *agents, timeout="60", env=None):
    got = cfn("agents", "wait", *agents, "--task-id", task, "--timeout", timeout, "--json",
              extra_env=env)
    return got.returncode, json.loads(got.stdout) if got.stdout else {}


def heartbeat(r, task, agent, deadline=20):
    """The supervisor's first heartbeat (the spawner's claim comes before it)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        beat = json.loads(r.get(keys.heartbeat(task, agent)) or "{}")
        if "supervisor_pid" in beat:
            return beat
        time.sleep(0.05)
    raise AssertionError("agent never started")


def test_scripted_agent_reports_confidence_and_completion(cfn, r):
    spawned = spawn(cfn, "tests-1", "T1", sys.executable, "-c",
                    "print('ran'); print('{\"confidence\": 0.75, \"deliverables\": [\"a.py\"]}')")
    code, waited = wait(cfn, "T1")
    assert code == 0
    record = waited["records"]["tests-1"]
    assert (record["status"], record["exit_code"], record["confidence"]) == ("success", 0, 0.75)
    assert record["deliverables"] == ["a.py"] and record["run_id"] == spawned["run_id"]
    collected = json.loads(cfn("collect-results", "--task-id", "T1", "--expected", "1",
                               "--threshold", "1", "--json", "--timeout", "5").stdout)
    assert collected["results"][0]["confidence"] == 0.75
    assert "ran" in cfn("agents", "logs", "tests-1", "--task-id", "T1").stdout
    history = json.loads(cfn("history", "T1", "--json").stdout)
    assert [(a["agent_id"], a["status"], a["exit_code"]) for a in history["agents"]] == [
        ("tests-1", "success", 0)]
    assert not r.exists(keys.heartbeat("T1", "tests-1"))


def test_agent_without_confidence_has_none(cfn):
    spawn(cfn, "quiet-1", "T1", "true")
    code, waited = wait(cfn, "T1")
    assert code == 0 and waited["records"]["quiet-1"]["confidence"] is None


def test_crashing_agent_is_reported_failed(cfn):
    spawn(cfn, "crash-1", "T1", sys.executable, "-c", "raise SystemExit(3)")
    code, waited = wait(cfn, "T1")
    assert code == 1
    assert (waited["records"]["crash-1"]["status"], waited["records"]["crash-1"]["exit_code"]) \
        == ("failure", 3)


def test_killed_agent_is_reported_within_seconds(cfn, r):
    spawn(cfn, "victim-1", "T1", "sleep", "300")
    beat = heartbeat(r, "T1", "victim-1")
    os.kill(int(beat["handle"]), signal.SIGKILL)
    started = time.monotonic()
    code, waited = wait(cfn, "T1", timeout="60")
    assert code == 1 and time.monotonic() - started < 30
    assert waited["records"]["victim-1"]["status"] == "killed"


def test_dead_supervisor_is_noticed_within_seconds(cfn, r):
    spawned = spawn(cfn, "orphan-1", "T1", "sleep", "300")
    beat = heartbeat(r, "T1", "orphan-1")
    os.kill(spawned["supervisor_pid"], signal.SIGKILL)
    os.killpg(int(beat["handle"]), signal.SIGKILL)
    started = time.monotonic()
    code, waited = wait(cfn, "T1", timeout="120")
    assert code == 1
    assert time.monotonic() - started < 30  # the heartbeat TTL, not the 120 s timeout
    assert waited["records"]["orphan-1"]["status"] == "lost"
    assert "lost" in cfn("agents", "ls", "--task-id", "T1").stdout


def test_timeout_is_enforced(cfn):
    spawn(cfn, "slow-1", "T1", "sleep", "300", extra=("--timeout", "1"))
    code, waited = wait(cfn, "T1")
    assert code == 1 and waited["records"]["slow-1"]["status"] == "timeout"


def test_stop_stops_and_still_reports(cfn, r):
    spawn(cfn, "long-1", "T1", "sleep", "300")
    heartbeat(r, "T1", "long-1")
    assert cfn("agents", "stop", "long-1", "--task-id", "T1").returncode == 0
    code, waited = wait(cfn, "T1")
    assert code == 1 and waited["records"]["long-1"]["status"] == "stopped"


def test_stdin_is_closed_so_a_reading_agent_cannot_hang(cfn):
    spawn(cfn, "reader-1", "T1", "cat", extra=("--timeout", "30"))
    code, waited = wait(cfn, "T1", timeout="20")
    assert code == 0 and waited["records"]["reader-1"]["status"] == "success"


def test_agent_acl_user_reaches_only_its_own_task(cfn, r):
    script = (
        "import subprocess, sys\n"
        "def cfn(*a): return subprocess.run([sys.executable, '-m', 'cfn', *a]).returncode\n"
        "own = cfn('context', 'store', '--task-id', 'T1', '--key', 'k', '--value', 'mine')\n"
        "other = cfn('context', 'store', '--task-id', 'T2', '--key', 'k', '--value', 'theirs')\n"
        "peek = cfn('context', 'get', '--task-id', 'T2', '--key', 'secret')\n"
        "print('{\"confidence\": 1.0, \"deliverables\": [%d, %d, %d]}' % (own, other, peek))\n"
    )
    r.set("context:{T2}:secret", "do not read")
    spawn(cfn, "acl-1", "T1", sys.executable, "-c", script)
    code, waited = wait(cfn, "T1")
    assert waited["records"]["acl-1"]["deliverables"] == [0, 4, 4]
    assert r.get("context:{T1}:k") == "mine" and r.get("context:{T2}:k") is None
    assert not [u for u in r.acl_users() if u.startswith("cfn-T1-acl-1")]  # removed at exit


def test_agents_ls_and_duplicate_spawn(cfn, r):
    spawn(cfn, "dup-1", "T1", "sleep", "300")
    heartbeat(r, "T1", "dup-1")
    again = cfn("spawn-agent", "dup-1", "T1", "--profile", "script", "--", "true")
    assert again.returncode == 2 and "already running" in again.stderr
    assert "running" in cfn("agents", "ls", "--task-id", "T1").stdout
    cfn("agents", "stop", "--task-id", "T1")
    wait(cfn, "T1")


@pytest.mark.parametrize("args,message", [
    (["spawn-agent", "a b", "T1", "--profile", "script", "--", "true"], "invalid agent ID"),
    (["spawn-agent", "x-1", "T1", "--profile", "script"], "give it after `--`"),
    (["spawn-agent", "coder-1", "T1"], "needs a --prompt"),
    (["spawn-agent", "nobody-1", "T1", "--", "true"], "no agent profile"),
    (["spawn-agent", "coder-1", "T1", "cli", "nosuch", "--prompt", "x"], "unknown provider"),
    (["spawn-agent", "x-1", "T1", "--profile", "script", "--workspace", "/nonexistent", "--",
      "true"], "not a directory"),
])
def test_bad_spawn_requests_exit_2_and_start_nothing(cfn, r, project, args, message):
    got = cfn(*args)
    assert got.returncode == 2 and message in got.stderr, got.stderr
    assert not (project / ".cfn" / "agents").exists()
    assert r.keys("agent:*") == []


def test_project_profiles_override_and_invalid_ones_are_clear(cfn, project):
    (project / "agents").mkdir()
    (project / "agents" / "coder.toml").write_text(
        'id = "coder"\nname = "Our coder"\nrole = "implementer"\ntimeout = 5\n')
    listed = json.loads(cfn("agents", "profiles", "--json").stdout)
    assert listed["coder"]["name"] == "Our coder" and "tester" in listed
    (project / "agents" / "bad.toml").write_text(
        'id = "bad"\nname = "Bad"\ncommand = ["run", "{secret_sauce}"]\n')
    got = cfn("agents", "profiles")
    assert got.returncode == 2 and "unknown placeholder(s) secret_sauce" in got.stderr


def test_no_api_key_in_ps_or_logs(cfn, r, project):
    key = "sk-zai-very-secret-0123456789"
    env = {"ZAI_API_KEY": key, "CFN_CUSTOM_ROUTING": "1", "COST_PROVIDER": "zai"}
    (project / "agents").mkdir()
    (project / "agents" / "sleeper.toml").write_text(
        'id = "sleeper"\nname = "Sleeper"\nkind = "claude"\n'
        'command = ["sleep", "300"]\n')  # running while ps looks, however slow the machine
    got = cfn("spawn-agent", "sleeper-1", "T1", "--prompt", "wait", "--cost-sensitive",
              "--json", extra_env=env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["provider"] == "zai"
    heartbeat(r, "T1", "sleeper-1")
    deadline = time.monotonic() + 30  # the sandbox may not have started its command yet
    while "sleep 300" not in (ps := subprocess.run(["ps", "-eo", "args"], capture_output=True,
                                                   text=True).stdout):
        assert time.monotonic() < deadline, ps
        time.sleep(0.1)
    assert key not in ps, ps
    assert cfn("agents", "stop", "sleeper-1", "--task-id", "T1").returncode == 0
    wait(cfn, "T1", env=env)
    for path in (project / ".cfn").rglob("*"):
        if path.is_file() and path.suffix in (".log", ".supervisor", ".db", ".conf"):
            assert key.encode() not in path.read_bytes(), path


def test_a_process_agent_inherits_only_an_allowlist_of_the_callers_environment(cfn, project):
    caller = {"CFN_TOKEN_SECRET": "s" * 40, "REDIS_FALLBACK_1": "redis://admin:pw@h:1",
              "AWS_SECRET_ACCESS_KEY": "aws-secret", "GITHUB_TOKEN": "ghp_secret",
              "MY_SETTING": "visible", "CFN_AGENT_ENV": "MY_SETTING"}
    spawn(cfn, "env-1", "T1", sys.executable, "-c",
          "import json, os; json.dump(dict(os.environ), open('seen.json', 'w'))", env=caller)
    assert wait(cfn, "T1", env=caller)[0] == 0
    seen = json.loads((project / "seen.json").read_text())
    assert not {"CFN_TOKEN_SECRET", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
                "CFN_HOME"} & set(seen)
    assert seen["REDIS_FALLBACK_1"] == "redis://h:1"  # the agent's own: its own user's
    assert seen["MY_SETTING"] == "visible" and "PATH" in seen  # the allowlist, and the extra
    # its own identity, under cfn's names and the seed's
    assert (seen["CFN_AGENT_ID"], seen["AGENT_ID"], seen["TASK_ID"], seen["MODE"]) == \
        ("env-1", "env-1", "T1", "cli")
    assert seen["REDIS_USERNAME"].startswith("cfn-T1-env-1-") and seen["CFN_TOKEN"]


def test_a_sandboxed_agent_sees_its_workspace_and_nothing_of_the_trusted_side(cfn, project):
    """Process agents run under bubblewrap: no state directory (token secret, database, Redis
    admin password), no home directory, no other process and its /proc/PID/environ."""
    (project / ".cfn").mkdir(exist_ok=True)
    (project / ".cfn" / "token.secret").write_text("s" * 64)
    probe = (
        "import json, os, pathlib\n"
        "def environ(pid):\n"
        "    try:\n"
        "        return open(f'/proc/{pid}/environ', errors='replace').read()\n"
        "    except OSError:\n"
        "        return ''\n"
        "import subprocess\n"
        "subprocess.run(['umount', '.cfn'], capture_output=True)  # even as root: no caps\n"
        "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "seen = {'state': os.listdir('.cfn') if os.path.isdir('.cfn') else None,\n"
        "        'pids': len(pids), 'home': os.listdir(os.environ['HOME']),\n"
        "        'leaked': any('SUPERVISOR_ONLY' in environ(p) for p in pids)}\n"
        "pathlib.Path('out.json').write_text(json.dumps(seen))\n"
        "pathlib.Path('written.txt').write_text('the workspace is writable')\n")
    home = project.parent / "caller-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("private")
    # the supervisor inherits this; the agent does not (allowlist), nor may it read it in /proc
    caller = {"HOME": str(home), "SUPERVISOR_ONLY": "provider-key-material"}
    spawn(cfn, "box-1", "T1", sys.executable, "-c", probe, env=caller)
    assert wait(cfn, "T1", env=caller)[0] == 0
    seen = json.loads((project / "out.json").read_text())
    assert seen["state"] == []  # the state directory is an empty tmpfs in there
    assert seen["home"] == [".claude"] and seen["leaked"] is False  # only its skills
    assert seen["pids"] < 5  # its own PID namespace: no supervisor, no other agent
    assert (project / "written.txt").exists()


def test_without_the_sandbox_spawning_says_what_it_gives_up(cfn, project):
    got = cfn("spawn-agent", "open-1", "T1", "--profile", "script", "--", "true",
              extra_env={"CFN_AGENT_SANDBOX": "off"})
    assert got.returncode == 0 and "unsandboxed" in got.stderr


def test_a_report_written_in_another_agents_name_is_not_its_word(cfn, r):
    honest = ("import subprocess, sys, time\n"
              "subprocess.run([sys.executable, '-m', 'cfn', 'report', '--task-id', 'T1',\n"
              "                '--agent-id', 'honest-1', '--confidence', '0.7'], check=True)\n"
              "time.sleep(3)\n")
    liar = ("import subprocess, sys, time\n"
            "time.sleep(1)\n"
            "sys.exit(subprocess.run([sys.executable, '-m', 'cfn', 'report', '--task-id', 'T1',\n"
            "          '--agent-id', 'honest-1', '--confidence', '1.0']).returncode)\n")
    spawn(cfn, "honest-1", "T1", sys.executable, "-c", honest)
    spawn(cfn, "liar-1", "T1", sys.executable, "-c", liar)
    code, waited = wait(cfn, "T1")
    assert waited["records"]["liar-1"]["status"] == "success"  # the write itself is allowed
    assert waited["records"]["honest-1"]["confidence"] == 0.7  # but only the signed one counts
    reports = [f for _, f in r.xrange("coord:{T1}:results") if f["agent"] == "honest-1"]
    assert [("sig" in f, f["confidence"]) for f in reports[:2]] == [(True, "0.7"), (False, "1.0")]


def test_an_agent_asking_to_spawn_agents_gets_a_clear_refusal(cfn, project):
    script = ("import subprocess, sys\n"
              "got = subprocess.run([sys.executable, '-m', 'cfn', 'spawn-agent', 'more-1', 'T1',\n"
              "                      '--profile', 'script', '--', 'true'],\n"
              "                     capture_output=True, text=True)\n"
              "open('refusal.txt', 'w').write(f'{got.returncode} {got.stderr}')\n")
    spawn(cfn, "greedy-1", "T1", sys.executable, "-c", script)
    assert wait(cfn, "T1")[0] == 0
    code, said = (project / "refusal.txt").read_text().split(" ", 1)
    assert code == "1" and "cannot spawn agents" in said and "NOPERM" not in said
