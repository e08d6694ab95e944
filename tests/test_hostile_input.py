"""Hostile input (issue 13's defects, each found by fuzzing): every writer and reader refuses
confidences outside [0, 1]; every option refuses what it cannot honour with exit 2, saying
the same by both paths and writing and starting nothing; timeouts below Redis's resolution
still end; the state directory is the owner's alone."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfn import embedded, keys
from cfn.coordination import results

DEEP_JSON = "[" * 3000 + "]" * 3000
T = "T1"


@pytest.mark.parametrize("confidence", ["inf", "7", "nan", "-1", "-inf", "1e309", "high"])
def test_a_confidence_written_by_hand_outside_0_to_1_never_passes_the_gate(
        cfn, r, confidence):
    r.xadd(keys.results(T), {"agent": "a1", "status": "success", "confidence": confidence})
    got = cfn("collect-results", "--task-id", T, "--expected", "1", "--threshold", "0.98",
              "--timeout", "0", "--json")
    doc = json.loads(got.stdout)
    assert got.returncode != 0 and not doc["met"], got.stderr
    assert doc["count"] == 0 and doc["mean_confidence"] is None  # as if absent
    assert "ignored report" in got.stderr and "a1" in got.stderr
    assert "Traceback" not in got.stderr


def test_a_confidence_out_of_range_does_not_hide_the_valid_reports(cfn, r):
    r.xadd(keys.results(T), {"agent": "a1", "status": "success", "confidence": "7"})
    assert cfn("report", "--task-id", T, "--agent-id", "a2", "--confidence", "0.9"
               ).returncode == 0
    got = json.loads(cfn("collect-results", "--task-id", T, "--expected", "1",
                         "--threshold", "1", "--timeout", "0", "--json").stdout)
    assert [rep["agent_id"] for rep in got["results"]] == ["a2"]
    assert got["mean_confidence"] == pytest.approx(0.9)


def test_a_signed_report_with_a_confidence_out_of_range_is_not_the_agents_word(r):
    good = results.report_fields("a1", confidence=0.4, max_bytes=1024)
    r.xadd(keys.results(T), {**good, "sig": results.signature("k" * 32, T, good)})
    bad = {"agent": "a1", "status": "success", "confidence": "inf"}
    r.xadd(keys.results(T), {**bad, "sig": results.signature("k" * 32, T, bad)})
    assert results.latest_signed(r, T, "a1", "k" * 32).confidence == 0.4


def test_a_result_nested_too_deep_to_parse_is_read_as_text(cfn, r):
    r.xadd(keys.results(T), {"agent": "a1", "status": "success", "result": DEEP_JSON})
    got = cfn("collect-results", "--task-id", T, "--expected", "1", "--threshold", "1",
              "--timeout", "0", "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["results"][0]["result"] == DEEP_JSON




@pytest.mark.parametrize("confidence", [float("inf"), 7, "high"])
def test_the_loops_gate_and_consensus_ignore_a_confidence_outside_0_to_1(confidence):
    from cfn.loop import scoring

    records = {"a1": {"agent_id": "a1", "status": "success", "confidence": confidence}}
    assert not scoring.gate(records, 0.98).passed
    assert not scoring.consensus(records, 0.95).passed


def test_a_decision_written_by_hand_with_a_confidence_outside_0_to_1_is_ignored(cfn, r):
    r.set(keys.decision(T), json.dumps({"task_id": T, "decision": "PROCEED", "confidence": 7}))
    got = cfn("decision", "get", "--task-id", T)
    assert got.returncode == 1 and "ignored" in got.stderr, got.stderr  # as if there were none


@pytest.mark.parametrize("confidence", [float("inf"), float("nan"), 7, -1])
def test_every_writer_refuses_a_confidence_outside_0_to_1(r, confidence):
    from cfn.coordination.decisions import Decision
    from cfn.errors import InvalidInput

    with pytest.raises(InvalidInput):
        results.report(r, T, "a1", confidence=confidence, ttl=60, max_bytes=1024)
    with pytest.raises(InvalidInput):
        results.report_fields("a1", confidence=confidence, max_bytes=1024)  # supervisors'
    with pytest.raises(InvalidInput):
        Decision(T, "PROCEED", confidence=confidence)
    assert r.dbsize() == 0


SEND = ["signal", "send", "--task-id", T, "--channel", "c"]
HOSTILE = {
    "invalid UTF-8 in an argument": [*SEND, "--payload", b"\xff"],
    "invalid UTF-8 in an ID": ["signal", "send", "--task-id", b"T\xc3", "--channel", "c"],
    "a timeout past what can be kept": ["signal", "wait", "--task-id", T, "--channel", "c",
                                        "--timeout", "1e20"],
    "a NaN timeout": ["signal", "wait", "--task-id", T, "--channel", "c", "--timeout", "nan"],
    "JSON nested 3,000 deep": ["report", "--task-id", T, "--agent-id", "a", "--result",
                               DEEP_JSON],
    "an iteration past SQLite's integers": ["decision", "set", "--task-id", T, "--decision",
                                            "PROCEED", "--iteration", str(2**63)],
    "a URL that is no URL": ["--redis-url", "notaurl", *SEND],
    "a port out of range": ["--redis-url", "redis://:99999999", *SEND],
    "a port that is no number": ["--redis-url", "redis://localhost:port", *SEND],
    "a TTL past what Redis can expire": ["context", "store", "--task-id", T, "--key", "k",
                                         "--value", "v", "--ttl", str(2**63)],
    "a lock lease of 1e20 s": ["lock", "acquire", "--task-id", T, "--name", "n",
                               "--ttl", "1e20"],
    "a NaN threshold": ["loop", "run", "--task-id", T, "--epic", "x", "--gate-threshold",
                        "nan"],
    "a NaN budget": ["loop", "run", "--task-id", T, "--epic", "x", "--budget-usd", "nan"],
    "an infinite agent timeout": ["spawn-agent", "a1", T, "--timeout", "inf"],
    "a token lifetime of 1e300 s": ["token", "issue", "--agent-id", "a", "--task-id", T,
                                    "--ttl", "1e300"],
    "rollback steps below 1": ["db", "rollback", "--steps", "0"],
    "rollback by steps and version": ["db", "rollback", "--steps", "1", "--to", "0"],
}


@pytest.mark.parametrize("args", HOSTILE.values(), ids=HOSTILE.keys())
def test_what_cannot_be_honoured_exits_2_the_same_by_both_paths(cfn, r, project, args):
    said = set()
    for fast in ("1", "0"):
        got = cfn(*args, extra_env={"CFN_FAST_PATH": fast})
        assert got.returncode == 2, got.stderr
        assert "Traceback" not in got.stderr and "internal error" not in got.stderr
        assert got.stdout == ""
        said.add(got.stderr)
    assert len(said) == 1  # one message, whichever path parsed it
    assert r.dbsize() == 0
    assert not (project / ".cfn").exists()


def test_a_malformed_url_is_refused_without_showing_its_password(cfn, r):
    got = cfn(*SEND, extra_env={"REDIS_URL": "redis://admin:s3cret@localhost:99999999"})
    assert got.returncode == 2 and "Port out of range" in got.stderr, got.stderr
    assert "s3cret" not in got.stderr and "****" in got.stderr


def test_a_state_directory_that_is_a_file_exits_2(cfn, r, project):
    (project / "file").write_text("")
    for home in (project / "file", project / "file" / ".cfn"):
        for fast in ("1", "0"):
            got = cfn(*SEND, extra_env={"CFN_HOME": str(home), "CFN_FAST_PATH": fast})
            assert got.returncode == 2 and "not a directory" in got.stderr, got.stderr
    assert r.dbsize() == 0


@pytest.mark.parametrize("timeout", ["0.0001", "1e-9", "0.0009"])
@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_timeout_below_redis_resolution_still_ends(cfn, r, timeout, fast):
    env = {"CFN_FAST_PATH": fast}
    waits = [["signal", "wait", "--task-id", T, "--channel", "c", "--timeout", timeout],
             ["collect-results", "--task-id", T, "--expected", "1", "--threshold", "1",
              "--timeout", timeout],
             ["completion", "wait", "--task-id", T, "--expected", "1", "--timeout", timeout]]
    for args in waits:
        started = time.monotonic()
        got = cfn(*args, extra_env=env, timeout=20)
        assert got.returncode == 3, got.stderr
        assert time.monotonic() - started < 10, args  # a process start, not a wait
    held = cfn("lock", "acquire", "--task-id", T, "--name", "n", "--ttl", "60")
    assert held.returncode == 0
    got = cfn("lock", "acquire", "--task-id", T, "--name", "n", "--ttl", "60", "--wait",
              timeout, extra_env=env, timeout=20)
    assert got.returncode == 3, got.stderr


def test_a_token_lifetime_below_one_second_is_rounded_up(cfn):
    import jwt

    issued = cfn("token", "issue", "--agent-id", "a", "--task-id", T, "--ttl", "0.0001")
    assert issued.returncode == 0, issued.stderr
    claims = jwt.decode(issued.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] >= 1  # not born expired


@pytest.fixture
def bare(project):
    """Run cfn in a fresh project with no Redis configured (umask 022, as most users have);
    stops whatever embedded server a test started."""
    def run(*args: str | bytes) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cfn", *args], cwd=project,
                              env=dict(os.environ), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL, umask=0o022)

    yield run
    embedded.stop(project / ".cfn")


@pytest.mark.parametrize("args", HOSTILE.values(), ids=HOSTILE.keys())
def test_bad_input_in_a_fresh_project_starts_no_server_and_creates_no_database(
        bare, project, args):
    got = bare(*args)
    assert got.returncode == 2, got.stderr
    assert not embedded.status(project / ".cfn").running
    assert not (project / ".cfn").exists()  # no server, no database, nothing


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


def test_the_state_directory_and_its_files_are_the_owners_alone(bare, project):
    assert bare(*SEND, "--payload", "p").returncode == 0  # starts the embedded server
    for args in (["collect-results", "--task-id", T, "--expected", "1", "--threshold", "1",
                  "--timeout", "0"],  # records in cfn.db
                 ["token", "issue", "--agent-id", "a", "--task-id", T]):  # makes a secret
        assert bare(*args).returncode in (0, 3)
    home = project / ".cfn"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    with contextlib.closing(sqlite3.connect(home / "cfn.db")) as db:  # -wal, -shm while open
        db.execute("SELECT count(*) FROM results").fetchone()
        for name in ("cfn.db", "cfn.db-wal", "cfn.db-shm"):
            assert (home / name).exists() and private(home / name), name
    exposed = [str(p.relative_to(home)) for p in home.rglob("*")
               if not p.is_socket() and not private(p)]  # the socket is 777 by design
    # the socket's own directory lets agents' users through (0711), listing nothing
    assert exposed == ["sockets"] and stat.S_IMODE((home / "sockets").stat().st_mode) == 0o711


def test_a_state_directory_an_older_cfn_left_open_is_closed(bare, project):
    (project / ".cfn").mkdir(mode=0o755)
    os.chmod(project / ".cfn", 0o755)
    assert bare("history", T).returncode == 1  # opens (creates) the database
    assert stat.S_IMODE((project / ".cfn").stat().st_mode) == 0o700
