import json

import pytest
from redis.crc import key_slot

from cfn import keys
from cfn.errors import InvalidInput
from cfn.ids import validate_id

BAD_IDS = ["", "*", "a b", "a\nb", "a;rm -rf", "{x}", "a:b", "-a", ".a", "x" * 129, "é", "$(id)"]


def test_all_keys_of_a_task_share_one_cluster_slot():
    task = "task-42"
    names = [
        keys.context(task, "deliverables"), keys.signal(task, "ch"), keys.results(task),
        keys.completion(task), keys.completion(task, "loop3"), keys.lock(task, "n"),
        keys.lock_fence(task, "n"), keys.lock_wake(task, "n"),
    ]
    assert len({key_slot(name.encode()) for name in names}) == 1


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_ids_are_rejected(bad):
    with pytest.raises(InvalidInput):
        validate_id(bad, "task ID")
    with pytest.raises(InvalidInput):
        keys.signal(bad, "ch")


@pytest.mark.parametrize("good", ["a", "T1", "feature-auth.v2_3", "x" * 128])
def test_valid_ids_pass(good):
    assert validate_id(good) == good


@pytest.mark.parametrize(
    "args",
    [
        ["signal", "send", "--task-id", "bad id", "--channel", "c", "--payload", "p"],
        ["signal", "send", "--task-id", "t", "--channel", "c*", "--payload", "p"],
        ["signal", "wait", "--task-id", "t", "--channel", "c", "--timeout", "-1"],
        ["signal", "wait", "--task-id", "t", "--channel", "c", "--timeout", "soon"],
        ["report", "--task-id", "t", "--agent-id", "a", "--result", "{not json"],
        ["report", "--task-id", "t", "--agent-id", "a", "--confidence", "2"],
        ["report", "--task-id", "t", "--agent-id", "a;x", "--confidence", "0.5"],
        ["report", "--task-id", "t", "--agent-id", "a", "--status", "maybe"],
        ["collect-results", "--task-id", "t", "--expected", "0", "--threshold", "0.5"],
        ["collect-results", "--task-id", "t", "--expected", "3", "--threshold", "1.5"],
        ["context", "store", "--task-id", "t", "--key", "k:x", "--value", "v"],
        ["context", "store", "--task-id", "t", "--key", "k", "--value", "v", "--ttl", "-5"],
        ["lock", "acquire", "--task-id", "t", "--name", "n", "--ttl", "0"],
        ["completion", "signal", "--task-id", "t", "--agent-id", "a", "--phase", "a b"],
        ["signal", "frobnicate"],
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(cfn, r, project, args):
    got = cfn(*args)
    assert got.returncode == 2, got.stderr
    assert got.stdout == ""
    assert "Traceback" not in got.stderr
    assert r.dbsize() == 0
    assert not (project / ".cfn").exists()  # no embedded server, no state written


def test_oversized_payload_exits_2(cfn, r):
    got = cfn("signal", "send", "--task-id", "t", "--channel", "c", "--payload", "x" * 200,
              extra_env={"CFN_MAX_PAYLOAD": "100"})
    assert got.returncode == 2 and "over the limit of 100" in got.stderr
    assert r.dbsize() == 0


def test_debug_shows_traceback_only_when_asked(cfn):
    plain = cfn("context", "get", "--task-id", "t", "--key", "missing")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = cfn("context", "get", "--task-id", "t", "--key", "missing",
                extra_env={"CFN_DEBUG": "1"})
    assert "Traceback" in debug.stderr


def test_json_output_is_one_document(cfn):
    got = cfn("report", "--task-id", "t", "--agent-id", "a", "--json")
    assert json.loads(got.stdout)["agent_id"] == "a"
