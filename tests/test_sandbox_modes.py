"""Sandbox modes: strict, permissive and disabled, with real bubblewrap, the real claude CLI
against the stand-in provider (through the provider relay), and real containers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from cfn.agents import relay
from cfn.agents.outcome import parse, sandbox_violations
from cfn.agents.profiles import Profile
from cfn.agents.spawn import SpawnRequest
from cfn.errors import InvalidInput
from cfn.project import Project
from standin import Standin

pytestmark = pytest.mark.usefixtures("reap_supervisors")
needs_claude = pytest.mark.skipif(shutil.which("claude") is None,
                                  reason="needs the claude CLI: npm install -g "
                                         "@anthropic-ai/claude-code")
WORKER = Profile(id="worker", name="Worker", kind="claude", tools=("Bash",), timeout=60,
                 max_retries=0, instructions="You look around.")


@pytest.fixture
def listener():
    """A TCP port on the host's loopback that no sandboxed agent may reach."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    yield server
    server.close()


def never_connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return True
    return False


@pytest.fixture
def outside(tmp_path_factory) -> Path:
    """Another project of the operator's, beside this one: readable to the operator."""
    other = tmp_path_factory.mktemp("other-project")
    (other / "secret.txt").write_text("other project's secret\n")
    return other


@pytest.fixture
def caller_home(tmp_path_factory) -> Path:
    """The spawner's home directory, with what an agent must never read in it."""
    home = tmp_path_factory.mktemp("caller-home")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_ed25519").write_text("private key\n")
    return home


# --- scripted agents: the cheaper checks -------------------------------------------------

PROBE = """\
import json, os, socket, sys
seen = {}
def attempt(name, action):
    try:
        action()
        seen[name] = "ok"
    except OSError as exc:
        seen[name] = exc.strerror or str(exc)
attempt("workspace", lambda: open("written.txt", "w").write("x"))
attempt("tmp", lambda: open("/tmp/scratch", "w").write("x"))
attempt("home", lambda: open(os.path.join(os.environ["HOME"], "h"), "w").write("x"))
attempt("outside", lambda: open(sys.argv[1]).read())
attempt("caller_home", lambda: open(sys.argv[2]).read())
attempt("loopback", lambda: socket.create_connection(("127.0.0.1", int(sys.argv[3])), 3))
attempt("internet", lambda: socket.create_connection(("192.0.2.1", 80), 3))
seen["state"] = sorted(os.listdir(".cfn")) if os.path.isdir(".cfn") else None
seen["tmpdir"] = os.environ.get("TMPDIR")
print(json.dumps({"probe": seen}))
"""


def probe(cfn, project, agent, mode, outside, caller_home, listener, *extra):
    (project / ".cfn").mkdir(exist_ok=True)
    (project / ".cfn" / "token.secret").write_text("s" * 64)
    got = cfn("spawn-agent", agent, "T1", "--profile", "script", "--sandbox", mode, "--wait",
              "--json", *extra, "--", sys.executable, "-c", PROBE,
              str(outside / "secret.txt"), str(caller_home / ".ssh" / "id_ed25519"),
              str(listener.getsockname()[1]), extra_env={"HOME": str(caller_home)})
    assert got.returncode == 0, got.stdout + got.stderr
    record = json.loads(got.stdout)["records"][agent]
    logs = cfn("agents", "logs", agent, "--task-id", "T1").stdout
    seen = next(json.loads(line)["probe"] for line in logs.splitlines() if '"probe"' in line)
    return record, seen


def test_strict_reads_the_workspace_writes_only_tmp_and_home_and_has_no_network(
        cfn, project, outside, caller_home, listener):
    record, seen = probe(cfn, project, "box-1", "strict", outside, caller_home, listener)
    assert (record["status"], record["sandbox"]) == ("success", "strict")
    assert seen["workspace"] == "Read-only file system"
    assert not (project / "written.txt").exists()
    assert (seen["tmp"], seen["home"], seen["tmpdir"]) == ("ok", "ok", "/tmp")
    assert seen["outside"] == seen["caller_home"] == "No such file or directory"
    assert seen["state"] == []  # the state directory is an empty tmpfs in there
    assert seen["loopback"] == "Connection refused" and never_connected(listener)
    assert seen["internet"] == "Network is unreachable"


def test_permissive_writes_the_workspace_and_has_no_network(cfn, project, outside,
                                                            caller_home, listener):
    record, seen = probe(cfn, project, "box-2", "permissive", outside, caller_home, listener)
    assert (record["status"], record["sandbox"]) == ("success", "permissive")
    assert seen["workspace"] == "ok" and (project / "written.txt").read_text() == "x"
    assert seen["outside"] == seen["caller_home"] == "No such file or directory"
    assert seen["state"] == []
    assert seen["loopback"] == "Connection refused" and never_connected(listener)


CONTROL_PROBE = """\
import json, os
seen = {}
for path in ("cfn.toml", "workers/audit.toml", "agents/new.toml", ".git/hooks/pre-commit",
             "notes.txt"):
    try:
        with open(path, "a") as handle:
            handle.write("# changed by the agent\\n")
        seen[path] = "ok"
    except OSError as exc:
        seen[path] = exc.strerror
print(json.dumps({"probe": seen}))
"""


def test_a_writable_workspace_keeps_the_operators_control_files_read_only(cfn, project):
    (project / "cfn.toml").write_text("key_ttl = 600\n")
    for directory in ("workers", "agents", ".git/hooks"):
        (project / directory).mkdir(parents=True, exist_ok=True)
    (project / "workers" / "audit.toml").write_text("interval = 60\n")
    got = cfn("spawn-agent", "box-3", "T1", "--profile", "script", "--sandbox", "permissive",
              "--wait", "--json", "--", sys.executable, "-c", CONTROL_PROBE)
    assert got.returncode == 0, got.stdout + got.stderr
    logs = cfn("agents", "logs", "box-3", "--task-id", "T1").stdout
    seen = next(json.loads(line)["probe"] for line in logs.splitlines() if '"probe"' in line)
    assert seen["notes.txt"] == "ok"  # the workspace is the agent's to write
    for path in ("cfn.toml", "workers/audit.toml", "agents/new.toml", ".git/hooks/pre-commit"):
        assert seen[path] == "Read-only file system", (path, seen)
    assert (project / "workers" / "audit.toml").read_text() == "interval = 60\n"
    assert (project / "cfn.toml").read_text() == "key_ttl = 600\n"


def test_disabled_runs_unsandboxed_and_says_so(cfn, project, outside, caller_home, listener):
    record, seen = probe(cfn, project, "open-1", "disabled", outside, caller_home, listener)
    assert (record["status"], record["sandbox"]) == ("success", "disabled")
    assert seen["workspace"] == "ok" and seen["outside"] == "ok"  # nothing is hidden
    assert "token.secret" in seen["state"] and seen["loopback"] == "ok"
    log = (project / ".cfn" / "supervisor" / "supervisor.log").read_text()
    assert "[open-1]: runs unsandboxed (sandbox mode disabled)" in log


@pytest.mark.parametrize(("extra", "more_env", "said"), [
    (("--sandbox", "loose"), {}, "Invalid value for '--sandbox'"),
    (("--sandbox", "strict", "--runtime", "kubernetes"), {},
     "not available on the kubernetes runtime"),
    (("--sandbox", "permissive", "--network", "host"), {}, "drop --network"),
    (("--sandbox", "strict"), {"PATH": "/nonexistent"}, "apt-get install bubblewrap"),
])
def test_a_mode_that_cannot_be_kept_is_refused_before_anything_is_written(cfn, project, extra,
                                                                          more_env, said):
    got = cfn("spawn-agent", "box-1", "T1", "--profile", "script", *extra, "--", "true",
              extra_env=more_env)
    assert got.returncode == 2 and said in got.stderr.strip().splitlines()[-1], got.stderr
    assert not (project / ".cfn" / "agents").exists()


def test_a_provider_the_relay_cannot_carry_is_refused_before_anything_is_written(cfn, project):
    got = cfn("spawn-agent", "coder-1", "T1", "cli", "zai", "--prompt", "hi", "--sandbox",
              "strict", extra_env={"ZAI_API_KEY": "sk-zai", "CFN_PROVIDER_ZAI_BASE_URL":
                                   "ftp://files.example"})
    assert got.returncode == 2 and "cannot be relayed" in got.stderr, got.stderr
    assert not (project / ".cfn" / "agents").exists()


def test_a_dry_run_shows_the_relay_and_the_fence(cfn):
    got = cfn("spawn-agent", "coder-1", "T1", "--prompt", "hi", "--sandbox", "strict",
              "--dry-run", "--json", extra_env={"HTTPS_PROXY": "http://proxy:3128",
                                                "https_proxy": "http://proxy:3128"})
    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)[0]
    assert not {"HTTPS_PROXY", "https_proxy"} & set(shown["env"])  # out of reach in there
    assert shown["argv"][1:8] == ["-m", "cfn.agents.relay", "--listen", "127.0.0.1:10443",
                                  "--socket", relay.SOCKET_INSIDE, "--"]
    assert shown["argv"][8] == "claude"
    assert shown["env"]["ANTHROPIC_BASE_URL"] == "https://api.anthropic.com:10443"
    assert shown["ro_mounts"]["<the relay's hosts file, per attempt>"] == "/etc/hosts"
    assert (shown["workspace_read_only"], shown["env"]["TMPDIR"]) == (True, "/tmp")


def test_the_python_api_checks_its_mode_and_profile(project, env):
    with Project.open(project, env=env) as opened:
        for bad, said in ((dict(sandbox_mode="loose"), "sandbox mode must be one of"),
                          (dict(profile_object="worker"), "must be a Profile")):
            with pytest.raises(InvalidInput, match=said):
                opened.spawn(SpawnRequest("w-1", "T1", prompt="hi", **bad))
    assert not (project / ".cfn" / "agents").exists()


# --- the relay, the report and the violations, on their own --------------------------------

@pytest.mark.parametrize(("url", "target", "port", "inside", "hostname"), [
    (None, ("api.anthropic.com", 443), 10443, "https://api.anthropic.com:10443",
     "api.anthropic.com"),
    ("https://api.z.ai/api/anthropic", ("api.z.ai", 443), 10443,
     "https://api.z.ai:10443/api/anthropic", "api.z.ai"),
    ("http://127.0.0.1:8123", ("127.0.0.1", 8123), 8123, "http://127.0.0.1:8123", None),
    ("http://localhost:8123/v1", ("localhost", 8123), 8123, "http://localhost:8123/v1",
     "localhost"),
    ("http://10.1.2.3", ("10.1.2.3", 80), 10080, "http://127.0.0.1:10080", None),
])
def test_the_relay_plan_keeps_hostnames_and_moves_low_ports(url, target, port, inside,
                                                            hostname):
    planned = relay.plan(url)
    assert (planned.target, planned.port, planned.base_url, planned.hostname) == \
        (target, port, inside, hostname)


def test_a_url_the_relay_cannot_carry_is_refused():
    with pytest.raises(InvalidInput, match="cannot be relayed"):
        relay.plan("ftp://example.com")


RESULT = json.dumps({"type": "result", "is_error": False, "result": "# Findings\nAll good."})


def test_without_a_required_report_a_plain_answer_succeeds_but_a_denial_still_fails():
    assert parse(RESULT, 0, claude_agent=True).status == "failure"  # no JSON report line
    assert parse(RESULT, 0, claude_agent=True, report_required=False).status == "success"
    denied = json.dumps({**json.loads(RESULT), "permission_denials": [
        {"tool_name": "Bash", "tool_input": {"command": "rm -rf /"}}]})
    assert parse(denied, 0, claude_agent=True, report_required=False).status == "failure"
    errored = json.dumps({**json.loads(RESULT), "is_error": True})
    assert parse(errored, 0, claude_agent=True, report_required=False).status == "failure"


def test_violations_are_read_from_tool_results_matched_to_their_tool_use():
    use = {"type": "assistant", "message": {"content": [
        {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "/w/a.txt"}},
        {"type": "tool_use", "id": "t2", "name": "Bash", "input": {"command": "ls"}}]}}
    results = {"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
         "content": "EROFS: read-only file system, open '/w/a.txt'"},
        {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text",
                                                                  "text": "a.txt\nb.txt"}]}]}}
    log = "\n".join(["not json", json.dumps(use), json.dumps(results)])
    assert sandbox_violations(log) == [{"tool": "Write", "input": "/w/a.txt",
                                        "error": "EROFS: read-only file system, open '/w/a.txt'"}]
    assert sandbox_violations("") == []


# --- the real claude CLI through the relay ---------------------------------------------------

@pytest.fixture
def claude_env(monkeypatch, env, caller_home):
    """This process as the spawner (the Python API, as the worker daemon calls it)."""
    for name, value in {**env, "HOME": str(caller_home), "ZAI_API_KEY": "sk-zai-stand-in",
                        "DISABLE_TELEMETRY": "1", "DISABLE_ERROR_REPORTING": "1",
                        "DISABLE_AUTOUPDATER": "1",
                        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}.items():
        monkeypatch.setenv(name, value)
    return os.environ


def run_worker(project, mode, base_url, **overrides):
    """One worker run on provider zai through `base_url`; its record and its log."""
    os.environ["CFN_PROVIDER_ZAI_BASE_URL"] = base_url
    with Project.open(project) as opened:
        spawned = opened.spawn(SpawnRequest(
            agent_id="worker-1", task_id="T1", provider="zai", profile_object=WORKER,
            prompt="look around", sandbox_mode=mode, report_required=False, **overrides))
        waited = opened.wait_agents("T1", {"worker-1": spawned.run_id}, timeout=90)
    assert not waited.timed_out
    return waited.records["worker-1"], Path(spawned.log_path).read_text()


@needs_claude
def test_a_strict_claude_worker_reaches_its_provider_and_nothing_else(
        project, claude_env, outside, caller_home, listener):
    port = listener.getsockname()[1]
    connect = (f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), "
               "3)\" 2>&1 | tail -1")
    model = Standin(reply="# Findings\nThe workspace is read-only.", tool_calls=[
        ("Bash", {"command": "echo hi > written.txt"}),
        ("Bash", {"command": f"ls -A {project / '.cfn'} | wc -l"}),
        ("Bash", {"command": f"cat {outside / 'secret.txt'} {caller_home / '.ssh/id_ed25519'}"}),
        ("Bash", {"command": connect}),
    ]).start()
    try:
        record, log = run_worker(project, "strict", model.url)
    finally:
        model.stop()
    assert (record["status"], record["sandbox"], record["provider"]) == \
        ("success", "strict", "zai"), record
    assert model.requests and {q["authorization"] for q in model.requests} == \
        {"Bearer sk-zai-stand-in"}  # through the relay, its key intact
    written, state, secrets, connected = model.tool_results
    assert "Read-only file system" in written and not (project / "written.txt").exists()
    assert state.strip() == "0"
    assert secrets.count("No such file or directory") == 2
    assert "other project's secret" not in secrets and "private key" not in secrets
    assert "Connection refused" in connected and never_connected(listener)
    violations = sandbox_violations(log)
    assert [(v["tool"], v["input"]) for v in violations] == [
        ("Bash", "echo hi > written.txt"), ("Bash", connect)]
    assert "Read-only file system" in violations[0]["error"]
    supervisor_log = (project / ".cfn" / "supervisor" / "supervisor.log").read_text()
    assert "[worker-1]: the strict sandbox refused Bash(echo hi > written.txt)" in supervisor_log


@needs_claude
def test_a_permissive_claude_worker_writes_the_workspace_through_a_named_provider(
        project, claude_env):
    model = Standin(reply="Wrote it.", tool_calls=[
        ("Bash", {"command": "echo hi > written.txt && grep -c . /etc/hosts"})]).start()
    try:  # a hostname: mapped to the sandbox's loopback by its own /etc/hosts (one line)
        port = model.server.server_address[1]
        record, _ = run_worker(project, "permissive", f"http://localhost:{port}")
    finally:
        model.stop()
    assert (record["status"], record["sandbox"]) == ("success", "permissive"), record
    assert (project / "written.txt").read_text() == "hi\n"
    assert model.tool_results == ["1"]


# --- a container: the same fence, through a mounted socket -----------------------------------

AGENT_IMAGE = "localhost/cfn-agent:latest"


def agent_image_present() -> bool:
    from cfn import images

    return shutil.which("podman") is not None and images.exists(AGENT_IMAGE)


@needs_claude
@pytest.mark.skipif(not agent_image_present(),
                    reason="needs podman and the agent image: cfn image build")
def test_a_strict_claude_worker_in_a_container_has_a_read_only_workspace_and_only_the_relay(
        project, claude_env, docker_host, listener, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    project.chmod(0o755)  # the image's user reads it, and may not write it
    port = listener.getsockname()[1]
    model = Standin(reply="Looked.", tool_calls=[
        ("Bash", {"command": "echo hi > /workspace/written.txt"}),
        ("Bash", {"command": f"python3 -c \"import socket; socket.create_connection(("
                             f"'host.containers.internal', {port}), 3)\" 2>&1 | tail -1"}),
    ]).start()
    try:
        record, log = run_worker(project, "strict", model.url, runtime="container",
                                 image=AGENT_IMAGE)
    finally:
        model.stop()
    assert (record["status"], record["sandbox"]) == ("success", "strict"), record
    assert model.requests  # the container reached its provider, through the relay alone
    written, connected = model.tool_results
    assert "Read-only file system" in written and not (project / "written.txt").exists()
    assert "Temporary failure in name resolution" in connected or \
        "Network is unreachable" in connected, connected
    assert never_connected(listener)
    assert len(sandbox_violations(log)) == 2
