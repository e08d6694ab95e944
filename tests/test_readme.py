"""The README runs as written: every shell block marked `<!-- runnable -->` runs, top to
bottom in one fresh project on the embedded Redis, as a new user would paste it, and exits
0 (or the code its marker names: `<!-- runnable: exit 1 -->`)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"<!-- runnable(?:: exit (\d+))? -->\n```(?:bash|sh)\n(.*?)```", re.S)


def runnable_blocks() -> list[tuple[int, str]]:
    return [(int(code or 0), body) for code, body in BLOCK.findall(README.read_text())]


def test_the_readme_marks_its_runnable_blocks():
    assert len(runnable_blocks()) >= 4


@pytest.fixture
def fresh_project(tmp_path):
    """A git project with one commit (worktrees branch from it) and cfn's skills (the
    README registers one), as a user following it in a clone of cfn has."""
    shutil.copytree(README.parent / "skills", tmp_path / "skills")
    for git in (["init", "-q"], ["add", "-A"],
                ["-c", "user.name=u", "-c", "user.email=u@example.com", "commit", "-qm", "start"]):
        subprocess.run(["git", *git], cwd=tmp_path, check=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REDIS_", "CFN_")) or k == "CFN_SUPERVISOR_IDLE_S"}
    yield tmp_path, env  # its supervisor leaves when idle (CFN_SUPERVISOR_IDLE_S)
    subprocess.run(["cfn", "redis", "stop"], cwd=tmp_path, env=env, capture_output=True,
                   timeout=60)


def test_the_readme_runs_as_written(fresh_project):
    project, env = fresh_project
    for expected, body in runnable_blocks():
        got = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=project, env=env,
                             capture_output=True, text=True, timeout=300)
        assert got.returncode == expected, \
            f"README block exited {got.returncode}:\n{body}\n--- stderr:\n{got.stderr}"
