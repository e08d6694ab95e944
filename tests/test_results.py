import json
import subprocess
import sys
import threading
import time

import pytest

from cfn.coordination import results
from cfn.errors import InvalidInput

TTL, MAX = 3600, 1 << 20


def report(r, agent, **kw):
    return results.report(r, "t1", agent, ttl=TTL, max_bytes=MAX, **kw)


def test_collect_returns_once_all_expected_reported(r):
    report(r, "a1", confidence=0.9)
    report(r, "a2", confidence=0.7, result={"files": ["x.py"]})
    started = time.monotonic()
    outcome = results.collect(r, "t1", expected=2, threshold=1.0, timeout=30)
    assert time.monotonic() - started < 15  # did not sit out the timeout
    assert (outcome.count, outcome.quorum, outcome.met, outcome.timed_out) == (2, 2, True, False)
    assert outcome.mean_confidence == pytest.approx(0.8)
    assert outcome.results[1].result == {"files": ["x.py"]}


def test_collect_blocks_until_a_late_report_arrives(r):
    report(r, "a1", confidence=1.0)
    done = {}

    def collector():
        done["outcome"] = results.collect(r.client(), "t1", expected=2, threshold=1, timeout=20)

    thread = threading.Thread(target=collector)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive()  # still waiting for the second report
    report(r, "a2", confidence=1.0)
    thread.join(timeout=20)
    assert done["outcome"].count == 2 and not done["outcome"].timed_out


def test_reading_results_never_consumes_them(r):
    report(r, "a1", confidence=0.5)
    first = results.collect(r, "t1", expected=1, threshold=1, timeout=1)
    second = results.collect(r, "t1", expected=1, threshold=1, timeout=1)
    assert first.results == second.results and second.count == 1


def test_missing_confidence_stays_missing(r):
    report(r, "a1")  # no confidence given
    report(r, "a2", status="failure")
    outcome = results.collect(r, "t1", expected=2, threshold=0.5, timeout=1)
    assert outcome.mean_confidence is None
    assert all(rep.confidence is None for rep in outcome.results)
    report(r, "a3", confidence=0.4)
    outcome = results.collect(r, "t1", expected=3, threshold=0.5, timeout=1)
    assert outcome.mean_confidence == pytest.approx(0.4)  # only the one that gave one


@pytest.mark.parametrize(
    "expected,threshold,successes,quorum,met",
    [(5, 0.9, 4, 5, False), (5, 0.8, 4, 4, True), (5, 0.6, 3, 3, True), (3, 0.0, 0, 0, True),
     (4, 0.5, 1, 2, False)],
)
def test_quorum_is_ceil_of_expected_times_threshold(r, expected, threshold, successes, quorum,
                                                     met):
    for i in range(expected):
        report(r, f"a{i}", status="success" if i < successes else "failure", confidence=0.9)
    outcome = results.collect(r, "t1", expected=expected, threshold=threshold, timeout=1)
    assert (outcome.quorum, outcome.met) == (quorum, met)


def test_a_later_report_replaces_the_agents_earlier_one(r):
    report(r, "a1", status="failure", confidence=0.1)
    report(r, "a1", status="success", confidence=0.9)
    outcome = results.collect(r, "t1", expected=1, threshold=1, timeout=1)
    assert outcome.count == 1 and outcome.results[0].status == "success"


def test_timeout_returns_what_arrived(r):
    report(r, "a1", confidence=0.9)
    outcome = results.collect(r, "t1", expected=3, threshold=0.5, timeout=0.2)
    assert outcome.timed_out and outcome.count == 1


@pytest.mark.parametrize("kw", [{"confidence": 1.5}, {"confidence": -0.1}, {"status": "done"}])
def test_invalid_reports_are_refused_and_nothing_written(r, kw):
    with pytest.raises(InvalidInput):
        report(r, "a1", **kw)
    assert r.dbsize() == 0


def test_cli_report_and_collect(cfn):
    for agent, conf in (("a1", "0.9"), ("a2", "0.8")):
        done = cfn("report", "--task-id", "t1", "--agent-id", agent, "--confidence", conf,
                   "--result", '{"tests": "passed"}')
        assert done.returncode == 0, done.stderr
    got = cfn("collect-results", "--task-id", "t1", "--expected", "2", "--threshold", "0.9",
              "--json")
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["met"] and doc["count"] == 2 and doc["quorum"] == 2
    assert doc["mean_confidence"] == pytest.approx(0.85)
    assert doc["results"][0]["result"] == {"tests": "passed"}


def test_cli_quorum_not_met_exits_1(cfn):
    cfn("report", "--task-id", "t1", "--agent-id", "a1", "--status", "failure")
    got = cfn("collect-results", "--task-id", "t1", "--expected", "1", "--threshold", "1")
    assert got.returncode == 1
    assert "not met" in got.stdout


def test_cli_collect_timeout_exits_3_and_prints_what_it_has(cfn):
    cfn("report", "--task-id", "t1", "--agent-id", "a1", "--confidence", "0.9")
    got = cfn("collect-results", "--task-id", "t1", "--expected", "3", "--threshold", "0.5",
              "--timeout", "0.3", "--json")
    assert got.returncode == 3
    doc = json.loads(got.stdout)
    assert doc["timed_out"] and doc["count"] == 1 and doc["results"][0]["agent_id"] == "a1"


def test_collecting_records_without_importing_sqlite_utils(cfn, r, env, project):
    """Commands that only record use a plain sqlite3 connection: sqlite-utils' import alone
    costs more than 100 ms a call."""
    results.report(r, "T9", "a1", confidence=0.8, ttl=60, max_bytes=1024)
    got = subprocess.run([sys.executable, "-X", "importtime", "-m", "cfn", "collect-results",
                          "--task-id", "T9", "--expected", "1", "--threshold", "1",
                          "--timeout", "0"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert "sqlite_utils" not in got.stderr and "| cfn.history" in got.stderr
    assert json.loads(cfn("history", "T9", "--json").stdout)["results"][0]["agent_id"] == "a1"
