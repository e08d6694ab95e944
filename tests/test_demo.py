"""`cfn demo`: the README's first command ends in it. No Redis configured, no API key."""

import json
import os
import subprocess
import sys

from cfn import embedded


def test_demo_fails_once_then_proceeds_on_the_embedded_defaults(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    directory = tmp_path / "demo"
    got = subprocess.run([sys.executable, "-m", "cfn", "demo", "--dir", str(directory), "--json"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert [i["decision"] for i in report["iterations"]] == ["ITERATE", "PROCEED"]
    assert report["iterations"][0]["gate_passed"] is False
    assert "scripted stand-ins for LLM agents" in got.stderr
    assert "[greet #2] decision: PROCEED" in got.stderr and "\x1b" not in got.stderr  # plain
    assert "started embedded redis-server" in got.stderr
    assert "cfn loop run" in got.stderr and "ANTHROPIC_API_KEY" in got.stderr
    # the agents did real work: the sample's tests pass now
    tests = subprocess.run([sys.executable, "-m", "unittest", "-q"], cwd=directory,
                           capture_output=True, text=True)
    assert tests.returncode == 0, tests.stderr
    assert not embedded.status(directory / ".cfn").running  # the demo cleaned up its server
    text = subprocess.run([sys.executable, "-m", "cfn", "loop", "report", "greet"],
                          cwd=directory, env=env, capture_output=True, text=True).stdout
    assert "decision   PROCEED" in text and "test_empty_name" in text
