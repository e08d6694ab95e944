"""An agent with nothing but redis-cli follows docs/keys.md; cfn receives what it sent."""

import json
import re
import subprocess

from conftest import REPO, redis_tool


def docs_snippet() -> str:
    """The bash block of docs/keys.md's 'Taking part with redis-cli' section."""
    text = (REPO / "docs" / "keys.md").read_text()
    section = text.split("## Taking part with redis-cli", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_redis_cli_agent_following_the_docs(cfn, redis_socket, r, project):
    script = docs_snippet().replace(
        'R="redis-cli -s .cfn/redis/redis.sock"', f'R="{redis_tool("redis-cli")} -s {redis_socket}"'
    )
    assert str(redis_socket) in script, "the docs' redis-cli line changed; update this test"
    # the snippet's BLPOP waits for a signal a cfn agent sends
    assert cfn("signal", "send", "--task-id", "task-42", "--channel", "agent-complete",
               "--payload", "from-cfn").returncode == 0
    agent = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=project,
                           capture_output=True, text=True, timeout=60)
    assert agent.returncode == 0, agent.stderr
    assert "from-cfn" in agent.stdout  # the redis-cli agent received cfn's signal

    got = cfn("signal", "wait", "--task-id", "task-42", "--channel", "start-loop2",
              "--timeout", "5")
    assert (got.returncode, got.stdout) == (0, '{"go":true}\n')

    collected = cfn("collect-results", "--task-id", "task-42", "--expected", "1",
                    "--threshold", "1", "--timeout", "5", "--json")
    assert collected.returncode == 0, collected.stderr
    doc = json.loads(collected.stdout)
    assert doc["results"][0]["agent_id"] == "coder-1"
    assert doc["results"][0]["confidence"] == 0.92
    assert doc["results"][0]["result"] == {"files": ["src/auth.py"]}

    done = cfn("completion", "wait", "--task-id", "task-42", "--expected", "1",
               "--phase", "loop3", "--timeout", "5")
    assert (done.returncode, done.stdout) == (0, "coder-1\tsuccess\n")
    stored = cfn("context", "get", "--task-id", "task-42", "--key", "deliverables")
    assert stored.stdout == '["src/auth.py"]\n'


def test_a_seed_style_list_push_onto_a_stream_is_a_clear_wrong_type_error(cfn, r):
    r.lpush("coord:{T}:results", '{"agent": "a", "confidence": 0.9}')  # as the seed's bash did
    got = cfn("collect-results", "--task-id", "T", "--expected", "1", "--threshold", "1",
              "--timeout", "0")
    assert got.returncode == 2, got.stderr
    assert "WRONGTYPE" in got.stderr and "docs/keys.md" in got.stderr
