"""The loop, honestly and live (issue 14): what a start that fails writes, a reused task ID,
an orchestrator that died or was interrupted, and the report, logs and watch that show it."""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from test_loop import APPROVE, GOOD, PROCEED, loop

pytestmark = pytest.mark.usefixtures("reap_supervisors")
SLOW = {"*": {"confidence": 0.9, "deliverables": ["app.py"], "sleep": 3}}
RUN = ["loop", "run", "--task-id", "T1", "--epic", "Add a greeting", "--mode", "mvp",
       "--loop3-agents", "impl", "--loop2-agents", "rev,qa", "--product-owner", "po"]


def until(check, what: str, timeout: float = 60):
    """Wait for check() to return something true, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)
    return found


def started(project, agent: str = "l3-impl-1 #1") -> bool:
    prompts = project / "prompts.log"
    return prompts.exists() and agent in prompts.read_text()


def background(project, env, *args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cfn", *args], cwd=project, env=env,
                            stdin=subprocess.DEVNULL, text=True, **kw)


def test_a_start_that_fails_its_checks_writes_nothing(
        cfn, agents, r, project, docker_host):  # noqa: F811
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=PROCEED)
    container = (*RUN, "--runtime", "container", "--image", "localhost/cfn-no-such-image:1")
    got = cfn(*container, extra_env={"DOCKER_HOST": docker_host})
    assert got.returncode == 2, got.stderr
    assert len(got.stderr.strip().splitlines()) == 1  # one line saying how to fix it
    assert "cfn-no-such-image:1 not found" in got.stderr
    nowhere = f"unix://{project}/no-engine.sock"
    assert cfn(*container, extra_env={"DOCKER_HOST": nowhere}).returncode == 4
    status = cfn("loop", "status", "T1")
    assert status.returncode == 1 and "no loop for task T1" in status.stderr  # no task row
    assert r.keys("coord:*") == [] and not (project / "prompts.log").exists()


def test_a_finished_task_id_runs_again_only_with_continue(cfn, agents):  # noqa: F811
    agents(impl=GOOD, rev=APPROVE, qa=APPROVE, po=PROCEED)
    assert loop(cfn)[0] == 0
    got = cfn(*RUN[:4], "--epic", "Something else entirely", *RUN[6:])
    assert got.returncode == 2 and "already ended (proceeded)" in got.stderr
    assert "--continue" in got.stderr
    again = json.loads(cfn("loop", "report", "T1", "--json").stdout)
    assert len(again["iterations"]) == 1  # nothing ran
    code, report, progress = loop(cfn, "--continue", "--max-iterations", "1")
    assert code == 0, progress
    assert [i["number"] for i in report["iterations"]] == [1, 2]


def test_a_continued_loop_killed_before_its_first_decision_resumes_its_new_round(
        cfn, agents, env, project):  # noqa: F811
    agents(impl={"1": GOOD["*"], "*": SLOW["*"]}, rev=APPROVE, qa=APPROVE, po=PROCEED)
    assert loop(cfn)[0] == 0
    orchestrator = background(project, env, *RUN, "--continue", "--max-iterations", "1",
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    until(lambda: started(project, "l3-impl-1 #2"), "the new round's implementer to start")
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait(timeout=30)
    got = cfn("loop", "resume", "T1", "--json", timeout=300)
    assert got.returncode == 0, got.stderr
    assert [i["number"] for i in json.loads(got.stdout)["iterations"]] == [1, 2]
    assert (project / "prompts.log").read_text().count("l3-impl-1 #2") == 1  # not run again


def test_status_says_a_killed_orchestrator_is_gone_and_how_to_resume(
        cfn, agents, env, project):  # noqa: F811
    agents(impl=SLOW, rev=APPROVE, qa=APPROVE, po=PROCEED)
    orchestrator = background(project, env, *RUN, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    until(lambda: started(project), "the implementer to start")
    alive = json.loads(cfn("loop", "status", "T1", "--json").stdout)
    assert (alive["status"], alive["orchestrator_alive"]) == ("running", True)
    assert "orchestrator gone" not in cfn("loop", "status", "T1").stdout
    orchestrator.send_signal(signal.SIGKILL)
    orchestrator.wait(timeout=30)
    text = cfn("loop", "status", "T1").stdout
    assert "T1: running" in text
    assert "orchestrator gone; resume with `cfn loop resume T1`" in text
    assert json.loads(cfn("loop", "status", "T1", "--json").stdout)["orchestrator_alive"] is False


def test_ctrl_c_lists_the_running_agents_and_how_to_resume_or_stop_them(
        cfn, agents, env, project):  # noqa: F811
    agents(impl=SLOW, rev=APPROVE, qa=APPROVE, po=PROCEED)
    orchestrator = background(project, env, *RUN, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    until(lambda: started(project), "the implementer to start")
    orchestrator.send_signal(signal.SIGINT)
    _, said = orchestrator.communicate(timeout=60)
    assert orchestrator.returncode == 130, said
    assert "cfn: aborted" not in said and "Traceback" not in said
    assert "its agents run on: l3-impl-1" in said
    assert "cfn loop resume T1" in said and "cfn agents stop --task-id T1" in said
    assert "orchestrator gone" in cfn("loop", "status", "T1").stdout  # at once, not in 10 s


@pytest.mark.skipif(shutil.which("claude") is None,
                    reason="needs the claude CLI: npm install -g @anthropic-ai/claude-code")
def test_report_shows_runtimes_providers_models_durations_costs_and_why(
        cfn, agents, project):  # noqa: F811
    from standin import Standin

    provider = Standin(auth="api-key", reply='Done.\n{"confidence": 0.96, '
                                             '"deliverables": ["hello.txt"]}').start()
    provider.tool_calls = [("Write", {"file_path": str(project / "hello.txt"),
                                      "content": "hello\n"})]
    home = project / "claude-home"
    home.mkdir()
    agents(rev={"*": {"confidence": 0.45, "feedback": "needs a test", "cost": 0.25}}, qa=APPROVE,
           po=PROCEED)
    claude = {"HOME": str(home), "ANTHROPIC_API_KEY": "sk-ant-standin",
              "CFN_PROVIDER_ANTHROPIC_BASE_URL": provider.url, "DISABLE_TELEMETRY": "1",
              "DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    try:
        got = cfn(*RUN[:8], "--loop3-agents", "coder", *RUN[10:], "--max-iterations", "1",
                  extra_env=claude, timeout=300)
    finally:
        provider.stop()
    assert got.returncode == 1, got.stderr  # consensus 0.70 < 0.80: exhausted
    text = cfn("loop", "report", "T1").stdout
    assert "exhausted (mvp) after 1 iteration," in text and "1 iterations" not in text
    coder = next(line for line in text.splitlines() if "l3-coder-1" in line)
    assert re.search(r"success\s+process\s+anthropic/\S+\s+\d+(\.\d)?s\s+[\d,]+ tokens\s+\$",
                     coder), coder
    reviewer = next(line for line in text.splitlines() if "l2-rev-1" in line)
    assert "$0.25" in reviewer and "confidence 0.45" in reviewer
    assert "gate       0.96 >= 0.70 passed" in text
    assert "consensus  0.70 < 0.80 not reached" in text
    assert "decision   ITERATE: PROCEED refused: no consensus" in text
    assert "no the" not in text
    report = json.loads(cfn("loop", "report", "T1", "--json").stdout)
    assert set(report) >= {"task", "iterations", "agents", "results", "decisions", "costs"}
    assert {"duration_s", "input_tokens", "output_tokens", "cost_usd", "provider", "model"} <= \
        set(report["agents"][0])


def test_logs_prefix_every_agent_and_follow_new_lines(cfn, agents, env, project):  # noqa: F811
    agents(impl=SLOW, rev=APPROVE, qa=APPROVE, po=PROCEED)
    orchestrator = background(project, env, *RUN, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    until(lambda: started(project), "the implementer to start")
    follower = background(project, env, "loop", "logs", "T1", "-f", stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
    followed, problems = follower.communicate(timeout=120)  # ends with the loop
    assert follower.returncode == 0, problems
    assert orchestrator.wait(timeout=120) == 0
    # lines the agents wrote after `logs -f` started, each under its agent's name
    assert re.search(r"^l3-impl-1 +\| .*\"confidence\": 0.9", followed, re.M), followed
    assert re.search(r"^l2-rev-1 +\| .*looks right", followed, re.M), followed
    assert re.search(r"^po-po +\| .*PROCEED", followed, re.M), followed
    whole = cfn("loop", "logs", "T1")
    # the same lines (validators run at once: followed, theirs interleave as they came)
    assert whole.returncode == 0
    assert sorted(whole.stdout.splitlines()) == sorted(followed.splitlines())
    stamped = cfn("loop", "logs", "T1", "--timestamps", "-n", "1", "--since", "1h").stdout
    assert re.search(r"^l2-qa-2 +\| \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \{", stamped, re.M), stamped
    assert cfn("loop", "logs", "T1", "-n", "0").stdout == ""
    assert cfn("loop", "logs", "T1", "--since", "soon").returncode == 2


def test_piped_watch_prints_plain_lines_and_ends_on_proceed(
        cfn, agents, env, project):  # noqa: F811
    agents(impl={"1": {"confidence": 0.5, "sleep": 2}, **GOOD}, rev=APPROVE, qa=APPROVE,
           po={"1": {"decision": "ITERATE", "reason": "gate failed"}, **PROCEED})
    orchestrator = background(project, env, *RUN, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    until(lambda: started(project), "the implementer to start")
    got = cfn("loop", "watch", "T1", timeout=120)
    assert got.returncode == 0, got.stderr
    assert orchestrator.wait(timeout=60) == 0
    assert "\x1b" not in got.stdout
    lines = got.stdout.splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d T1 ", line) for line in lines), lines
    assert any("#1 gate failed: mean confidence 0.50 < 0.70" in line for line in lines)
    assert any("#2 l2-qa-2 success, confidence 0.95" in line for line in lines)
    assert any("#2 decision PROCEED: criteria met" in line for line in lines)
    assert lines[-1].endswith("T1 ended: proceeded (criteria met)")


class Terminal:
    """A real terminal: a tmux server of its own, 120 x 40, running one shell command."""

    def __init__(self, command: str, cwd):
        self.tmux = ["tmux", "-L", f"cfn-test-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
        subprocess.run([*self.tmux, "new-session", "-d", "-x", "120", "-y", "40", "-c",
                        str(cwd), f"{command}; echo EXIT=$?; sleep 120"], check=True, timeout=30)

    def showing(self, *texts: str) -> str | None:
        """The screen and its scrollback, when it shows every one of `texts`."""
        shown = subprocess.run([*self.tmux, "capture-pane", "-p", "-S", "-200", "-t", "0"],
                               capture_output=True, text=True, timeout=30).stdout
        return shown if all(text in shown for text in texts) else None

    def close(self) -> None:
        subprocess.run([*self.tmux, "kill-server"], timeout=30)


def cfn_command(env: dict, *args: str) -> str:
    variables = " ".join(f"{k}={shlex.quote(env[k])}" for k in ("REDIS_URL", "CFN_HOME", "PATH")
                         if k in env)
    # the terminal's own size, not the one pytest's environment may carry
    return (f"env -u COLUMNS -u LINES {variables} TERM=xterm-256color "
            f"{shlex.quote(sys.executable)} -m cfn " + " ".join(map(shlex.quote, args)))


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux: apt-get install tmux")
def test_watch_on_a_terminal_redraws_its_table_until_proceed(
        cfn, agents, env, project):  # noqa: F811
    agents(impl={"1": {"confidence": 0.5, "sleep": 3}, **GOOD}, rev=APPROVE, qa=APPROVE,
           po={"1": {"decision": "ITERATE", "reason": "gate failed"}, **PROCEED})
    orchestrator = background(project, env, *RUN, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    until(lambda: started(project), "the implementer to start")
    terminal = Terminal(cfn_command(env, "loop", "watch", "T1"), project)
    try:
        running = until(lambda: terminal.showing("l3-impl-1", "running…"),
                        "the table of a running loop")
        assert "T1 (mvp): iteration 1 of 5" in running and "model" in running
        done = until(lambda: terminal.showing("EXIT="), "the watch to end", timeout=120)
    finally:
        terminal.close()
    assert orchestrator.wait(timeout=60) == 0
    assert "EXIT=0" in done and "proceeded: criteria met (2 iterations)" in done
    assert done.count("elapsed") == 1  # redrawn in place, not printed again
    assert "#1 gate: failed: mean confidence 0.50 < 0.70" in done
    assert "#2 consensus: reached: consensus 0.95 >= 0.80" in done
    assert "#2 decision: PROCEED (criteria met)" in done
    assert "\x1b" not in done


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux: apt-get install tmux")
def test_demo_on_a_terminal_draws_the_loop_live(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    terminal = Terminal(cfn_command(env, "demo", "--dir", str(tmp_path / "demo")), tmp_path)
    try:
        done = until(lambda: terminal.showing("EXIT="), "the demo to end", timeout=180)
    finally:
        terminal.close()
    assert "EXIT=0" in done, done
    assert done.count("elapsed") == 1 and "l2-demo-linter-2" in done, done
    assert "#1 gate: failed" in done and "#2 decision: PROCEED" in done
    assert "[greet #1] loop 3" not in done  # the table, not the progress lines
    assert "ANTHROPIC_API_KEY" in done  # then how to run it with Claude Code
