"""docs/python.md runs as written: each python block in a fresh process, its printed lines
checked against the `# expected` comments beside the prints."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "python.md").read_text(), re.S)
EXPECTED = re.compile(r"print\(.*\)\s+# (.+)$")


def expected_lines(block: str) -> list[str]:
    return [m.group(1).removesuffix("...").strip()
            for line in block.splitlines() if (m := EXPECTED.search(line))]


def test_the_guide_has_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.usefixtures("reap_supervisors")
@pytest.mark.parametrize("block", BLOCKS, ids=[f"block-{i}" for i in range(len(BLOCKS))])
def test_python_guide_block_runs_as_written(block, project, env):
    got = subprocess.run([sys.executable, "-c", block], cwd=project, env=env,
                         capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert got.returncode == 0, got.stderr
    printed = got.stdout.splitlines()
    wanted = expected_lines(block)
    assert len(printed) == len(wanted), got.stdout
    for line, expected in zip(printed, wanted, strict=True):
        assert line.startswith(expected), (line, expected)
