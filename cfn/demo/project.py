"""The sample project the demo works on, and the profiles of its scripted agents."""

from __future__ import annotations

import json
import sys
from pathlib import Path

EPIC = ("Make greet(name) return 'Hello, NAME!', and greet the world when the name is "
        "empty or blank.")
TESTS = '''import unittest

from greet import greet


class GreetTest(unittest.TestCase):
    def test_greets_by_name(self):
        self.assertEqual(greet("Ada"), "Hello, Ada!")

    def test_punctuation(self):
        self.assertTrue(greet("Bo").endswith("!"))

    def test_empty_name(self):
        self.assertEqual(greet(""), "Hello, world!")
        self.assertEqual(greet("  "), "Hello, world!")


if __name__ == "__main__":
    unittest.main()
'''
ROLES = {"demo-implementer": "implementer", "demo-tester": "tester",
         "demo-linter": "linter", "demo-product-owner": "product-owner"}


def create(directory: Path) -> None:
    """Write the sample project: an unfinished function, its tests, and the agents."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cfn.toml").write_text("# the cfn demo's project (its state is in .cfn/)\n")
    (directory / "greet.py").write_text('def greet(name):\n    raise NotImplementedError\n')
    (directory / "test_greet.py").write_text(TESTS)
    (directory / "agents").mkdir(exist_ok=True)
    for profile, role in ROLES.items():
        command = json.dumps([sys.executable, "-m", "cfn.demo.agents", role])
        (directory / "agents" / f"{profile}.toml").write_text(
            f'# a scripted stand-in for an LLM agent\nid = "{profile}"\n'
            f'name = "Demo {role}"\nkind = "scripted"\ntimeout = 60\ncommand = {command}\n')
