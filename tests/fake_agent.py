"""A scripted agent for loop tests: behaves as its profile's JSON says, per iteration.

    fake_agent.py '{"1": {"confidence": 0.5}, "*": {"confidence": 0.9, "sleep": 1}}'

Keys: confidence, deliverables, feedback, decision, reason, exit, sleep, cost (prints a
Claude-style result line so the supervisor records a cost). It appends its prompt to
prompts.log in the workspace, so tests can see what the loop told it.
"""

import json
import os
import sys
import time

plan = json.loads(sys.argv[1])
iteration = os.environ.get("CFN_ITERATION", "1")
step = plan.get(iteration, plan.get("*", {}))
with open("prompts.log", "a") as log:
    log.write(f"{os.environ['CFN_AGENT_ID']} #{iteration}: {os.environ.get('CFN_PROMPT', '')}\n")
time.sleep(step.get("sleep", 0))
report = {k: step[k] for k in ("confidence", "deliverables", "feedback", "decision", "reason")
          if k in step}
for deliverable in step.get("deliverables", []) if not step.get("lie") else []:
    with open(deliverable, "a") as made:  # it does the work it reports
        made.write(f"# by {os.environ['CFN_AGENT_ID']}\n")
if "cost" in step:
    print(json.dumps({"type": "result", "is_error": False, "result": json.dumps(report),
                      "total_cost_usd": step["cost"],
                      "usage": {"input_tokens": 10, "output_tokens": 5}}))
elif report:
    print(json.dumps(report))
sys.exit(step.get("exit", 0))
