"""The demo's scripted agents. They do real work on the sample project, but they are
stand-ins for LLM agents: their 'judgement' is a test run and a lint pass.

    python -m cfn.demo.agents implementer|tester|linter|product-owner
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# What the implementer knows how to write, and which test each step satisfies.
FIRST_DRAFT = '''def greet(name):
    """Greet someone by name."""
    return f"Hello, {name}!"
'''
HANDLES_EMPTY = '''def greet(name):
    """Greet someone by name; an empty name greets the world."""
    return f"Hello, {name.strip() or 'world'}!"
'''


def run_tests() -> tuple[float, list[str]]:
    """The sample's unittest suite: (pass rate, names of failing tests)."""
    done = subprocess.run([sys.executable, "-m", "unittest", "-v"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    lines = done.stderr.splitlines()
    results = [line for line in lines if line.endswith((" ok", " FAIL", " ERROR"))]
    failing = [line.split()[0] for line in results if not line.endswith(" ok")]
    return (len(results) - len(failing)) / len(results) if results else 0.0, failing


def say(report: dict) -> None:
    print(json.dumps(report))


def implementer() -> None:
    feedback = os.environ.get("CFN_PROMPT", "")
    draft = HANDLES_EMPTY if "test_empty_name" in feedback else FIRST_DRAFT
    Path("greet.py").write_text(draft)
    rate, failing = run_tests()
    say({"confidence": round(rate, 2), "deliverables": ["greet.py"],
         "feedback": f"failing: {', '.join(failing)}" if failing else "all tests pass"})


def tester() -> None:
    rate, failing = run_tests()
    say({"confidence": round(rate, 2),
         "feedback": f"failing: {', '.join(failing)}" if failing else "all tests pass"})


def linter() -> None:
    problems = []
    for path in sorted(Path(".").glob("*.py")):
        compiled = subprocess.run([sys.executable, "-m", "py_compile", str(path)],
                                  capture_output=True, text=True)
        if compiled.returncode:
            problems.append(f"{path}: does not compile")
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if len(line) > 99 or line != line.rstrip():
                problems.append(f"{path}:{number}: long line or trailing space")
    say({"confidence": 1.0 if not problems else 0.5,
         "feedback": "; ".join(problems) or "clean"})


def product_owner() -> None:
    facts = json.loads(os.environ["CFN_PROMPT"].split("Facts: ", 1)[1].split("\n", 1)[0])
    if facts["gate_passed"] and facts["consensus_passed"] and facts["deliverables"]:
        say({"decision": "PROCEED", "reason": "the gate passed and the validators agree"})
    else:
        say({"decision": "ITERATE", "reason": "not there yet: " + "; ".join(facts["feedback"])})


ROLES = {"implementer": implementer, "tester": tester, "linter": linter,
         "product-owner": product_owner}

if __name__ == "__main__":
    ROLES[sys.argv[1]]()
