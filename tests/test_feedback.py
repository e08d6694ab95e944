"""Waits say what arrives as it arrives, on stderr, while stdout stays the result.

Each test runs the real `cfn` in a subprocess against the real test server, reads its
stderr line by line as it comes (every read has a deadline), and makes the arrivals happen
while the wait is under way.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

from cfn.coordination import completion, results

ESCAPE = "\x1b"


class Waiter:
    """A `cfn` process whose stderr is read line by line as it is written."""

    def __init__(self, args: list[str], project, env: dict, extra_env: dict | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cfn", *args], cwd=project, env={**env, **(extra_env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def line_with(self, text: str, deadline_s: float = 20) -> str:
        """The next stderr line containing `text`, said while the process still runs."""
        end = time.monotonic() + deadline_s
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            assert line is not None, f"ended without saying {text!r}; said {self.said}"
            self.said.append(line)
            if text in line:
                assert self.proc.poll() is None, f"said {text!r} only after the wait ended"
                return line
        raise AssertionError(f"no {text!r} on stderr within {deadline_s} s; said {self.said}")

    def finish(self, deadline_s: float = 30) -> tuple[int, str, str]:
        """Exit code, stdout, and all of stderr."""
        stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout=deadline_s)
        while (line := self.lines.get(timeout=deadline_s)) is not None:
            self.said.append(line)
        return code, stdout, "".join(self.said)


COLLECT = ["collect-results", "--task-id", "T1", "--expected", "2", "--threshold", "1",
           "--timeout", "60", "--json"]


def report(r, agent: str, status: str = "success", confidence: float | None = 0.9) -> None:
    results.report(r, "T1", agent, status=status, confidence=confidence, ttl=600,
                   max_bytes=65536)


def test_collect_results_announces_each_report_as_it_arrives(project, env, r, cfn):
    waiter = Waiter(COLLECT, project, env)
    report(r, "a1")
    first = waiter.line_with("a1 reported")
    assert first == "cfn: a1 reported success (confidence 0.90) — 1 of 2, quorum 2\n"
    report(r, "a2", status="failure", confidence=None)
    assert waiter.line_with("a2 reported") == "cfn: a2 reported failure — 2 of 2, quorum 2\n"
    code, stdout, stderr = waiter.finish()
    assert code == 1 and ESCAPE not in stderr  # piped: plain lines only
    # stdout is the result alone: what a quiet run prints, byte for byte
    quiet = cfn("--quiet", *COLLECT)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (1, stdout, "")
    assert json.loads(stdout)["count"] == 2


def test_a_piped_wait_says_it_is_still_waiting(cfn):
    got = cfn("collect-results", "--task-id", "T1", "--expected", "2", "--threshold", "1",
              "--timeout", "1", extra_env={"CFN_PROGRESS_EVERY_S": "0.3"})
    assert got.returncode == 3 and got.stdout.startswith("quorum 2 of 2")
    assert "cfn: still waiting: 0 of 2 reported after 0.3 s\n" in got.stderr
    assert "cfn: still waiting" not in cfn(
        "-q", "collect-results", "--task-id", "T1", "--expected", "2", "--threshold", "1",
        "--timeout", "1", extra_env={"CFN_PROGRESS_EVERY_S": "0.3"}).stderr


def test_colour_follows_the_flag_and_no_color(cfn, r):
    report(r, "a1")
    args = ["collect-results", "--task-id", "T1", "--expected", "1", "--threshold", "1"]
    # piped, auto: none; --color always wins over NO_COLOR (an explicit flag, as
    # no-color.org asks); never: none
    assert ESCAPE not in cfn(*args).stderr
    always = cfn("--color", "always", *args, extra_env={"NO_COLOR": "1"})
    assert "\x1b[32ma1 reported success" in always.stderr and ESCAPE not in always.stdout
    assert ESCAPE not in cfn("--color", "never", *args).stderr
    assert cfn("--color", "blue", *args).returncode == 2


def test_verbose_says_more_and_quiet_with_verbose_is_refused(cfn, r):
    report(r, "a1")
    args = ["collect-results", "--task-id", "T1", "--expected", "1", "--threshold", "1"]
    verbose = cfn("--verbose", *args)
    assert "cfn: waiting for 1 reports on task T1 (quorum 1, timeout 300 s)" in verbose.stderr
    both = cfn("--quiet", "--verbose", *args)
    assert both.returncode == 2 and "give one" in both.stderr and not both.stdout


def test_completion_wait_announces_each_completion(project, env, r, cfn):
    args = ["completion", "wait", "--task-id", "T1", "--expected", "2", "--phase", "loop3",
            "--timeout", "60"]
    waiter = Waiter(args, project, env)
    for agent, status in (("c1", "success"), ("c2", "failure")):
        completion.signal_completion(r, "T1", agent, status=status, phase="loop3", ttl=600,
                                     max_bytes=65536)
        count = 1 if agent == "c1" else 2
        assert waiter.line_with(f"{agent} completed") == \
            f"cfn: {agent} completed: {status} — {count} of 2\n"
    code, stdout, stderr = waiter.finish()
    assert (code, stdout) == (0, "c1\tsuccess\nc2\tfailure\n") and ESCAPE not in stderr
    quiet = cfn("-q", *args)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, stdout, "")


def spawn(cfn, agent: str, *command: str, extra: tuple = ()) -> None:
    got = cfn("spawn-agent", agent, "T1", "--profile", "script", "--json", *extra, "--",
              *command)
    assert got.returncode == 0, got.stderr


@pytest.mark.usefixtures("reap_supervisors")
def test_agents_wait_announces_each_agent_as_it_finishes(project, env, cfn):
    go = project / "go"
    spawn(cfn, "quick-1", sys.executable, "-c", "print('{\"confidence\": 0.8}')")
    # exits 3 once the test has seen quick-1 announced (or after its own deadline)
    spawn(cfn, "late-1", sys.executable, "-c",
          f"import os, time\nend = time.time() + 30\n"
          f"while not os.path.exists({str(go)!r}) and time.time() < end: time.sleep(0.05)\n"
          "raise SystemExit(3)")
    waiter = Waiter(["agents", "wait", "--task-id", "T1", "--timeout", "60"], project, env)
    line = waiter.line_with("agent quick-1 finished")
    assert re.fullmatch(r"cfn: agent quick-1 finished: success in \d+\.\d s — 1 of 2\n", line)
    go.touch()
    late = waiter.line_with("agent late-1 finished")
    assert re.fullmatch(r"cfn: agent late-1 finished: failure \(exited with 3\) in \d+\.\d s"
                        r" — 2 of 2\n", late), late
    code, stdout, stderr = waiter.finish()
    assert code == 1 and ESCAPE not in stderr
    assert stdout.splitlines() == ["quick-1\tsuccess\texit 0\tconfidence 0.8",
                                   "late-1\tfailure\texit 3\tconfidence -"]


@pytest.mark.usefixtures("reap_supervisors")
def test_a_run_without_exit_code_shows_why(cfn):
    spawn(cfn, "slow-1", "sleep", "300", extra=("--timeout", "1"))
    got = cfn("agents", "wait", "--task-id", "T1", "--timeout", "60")
    assert got.returncode == 1
    assert "None" not in got.stdout and "None" not in got.stderr
    agent, status, ending, _confidence = got.stdout.strip().split("\t")
    assert (agent, status, ending) == ("slow-1", "timeout", "timed out after 1s")
    listed = cfn("agents", "ls", "--task-id", "T1").stdout
    assert re.fullmatch(r"T1\tslow-1\trun \d+\ttimeout\tprocess\t-\tsignal \d+\t\d+\.\d s\n",
                        listed), listed


def test_signal_wait_says_the_same_on_both_paths(cfn):
    heartbeat = {"CFN_PROGRESS_EVERY_S": "0.6"}  # one heartbeat, well inside the wait
    args = ["signal", "wait", "--task-id", "T1", "--channel", "go", "--timeout", "1"]
    fast = cfn(*args, extra_env=heartbeat)
    click_path = cfn(*args, extra_env={**heartbeat, "CFN_FAST_PATH": "0"})
    assert fast.returncode == click_path.returncode == 3
    assert fast.stderr == click_path.stderr
    assert fast.stderr == ("cfn: still waiting: no signal on go after 0.6 s\n"
                           "cfn: error: no signal on channel 'go' of task T1 within 1s\n")
    assert "still waiting" not in cfn("-q", *args, extra_env=heartbeat).stderr


def test_progress_on_a_terminal_is_redrawn_and_ends_cleanly(project, env, r):
    """stderr on a pseudo-terminal: a live status line, removed at the end; the arrivals
    stay."""
    import pty

    report(r, "a1")
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cfn", "collect-results", "--task-id", "T1", "--expected", "2",
         "--threshold", "1", "--timeout", "1"], cwd=project,
        env={**env, "TERM": "xterm"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=follower)
    os.close(follower)
    said = b""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        said += chunk
    os.close(leader)
    assert proc.wait(timeout=30) == 3
    text = said.decode(errors="replace")
    assert "a1 reported success" in text and "waiting: 1 of 2 reported" in text
    assert text.rstrip("\r\n").endswith("cfn: timed out after 1s with 1 of 2 reports")
    assert "\x1b[?25h" in text  # the cursor is given back
    assert proc.stdout.read().startswith(b"quorum 2 of 2")
