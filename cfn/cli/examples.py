"""An example for every command's help, kept in one place (tests/test_cli_grammar.py checks
that every command has one). Shown under its options as `Example:`."""

from __future__ import annotations

import click

EXAMPLES = {
    "agents logs": "cfn agents logs coder-1 --task-id T -f",
    "agents ls": "cfn agents ls --task-id T",
    "agents profiles": "cfn agents profiles --json",
    "agents stop": "cfn agents stop coder-1 --task-id T",
    "agents wait": "cfn agents wait --task-id T --timeout 900",
    "barrier signal": "cfn barrier signal --task-id T --agent-id coder-1 --phase loop3",
    "barrier wait": "cfn barrier wait --task-id T --expected 3 --phase loop3 --timeout 600",
    "completion bash": 'eval "$(cfn completion bash)"',
    "completion fish": "cfn completion fish | source",
    "completion zsh": 'eval "$(cfn completion zsh)"',
    "config": "cfn config --json",
    "context delete": "cfn context delete --task-id T --key deliverables",
    "context get": "cfn context get --task-id T --key deliverables",
    "context list": "cfn context list --task-id T",
    "context store": "cfn context store --task-id T --key deliverables --value '[\"a.py\"]'",
    "daemon job": "cfn daemon job 5f1c... --wait --json",
    "daemon logs": "cfn daemon logs -f",
    "daemon start": "cfn daemon start --headless --sandbox strict",
    "daemon status": "cfn daemon status --show-modes",
    "daemon stop": "cfn daemon stop",
    "daemon trigger": "cfn daemon trigger -w audit --headless --wait",
    "db migrate": "cfn db migrate",
    "db rollback": "cfn db rollback --steps 1 --dry-run",
    "db status": "cfn db status",
    "decision get": "cfn decision get --task-id T --json",
    "decision set": "cfn decision set --task-id T --decision ITERATE --iteration 1 "
                    "--reason 'tests missing'",
    "demo": "cfn demo",
    "doctor": "cfn doctor --json",
    "history": "cfn history T --json",
    "image build": "cfn image build",
    "image status": "cfn image status",
    "lock acquire": "TOKEN=$(cfn lock acquire --task-id T --name deploy --ttl 30 --json "
                    "| jq -r .token)",
    "lock extend": 'cfn lock extend --task-id T --name deploy --token "$TOKEN" --ttl 30',
    "lock release": 'cfn lock release --task-id T --name deploy --token "$TOKEN"',
    "loop logs": "cfn loop logs T -f --since 10m",
    "loop report": "cfn loop report T",
    "loop resume": "cfn loop resume T",
    "loop run": "cfn loop run --task-id T --epic 'Add login' --loop3-agents coder "
                "--loop2-agents code-reviewer,tester --product-owner product-owner",
    "loop status": "cfn loop status T",
    "loop watch": "cfn loop watch T",
    "redis start": "cfn redis start",
    "redis status": "cfn redis status",
    "redis stop": "cfn redis stop",
    "results collect": "cfn results collect --task-id T --expected 5 --threshold 0.9 "
                       "--timeout 600 --json",
    "results report": "cfn results report --task-id T --agent-id coder-1 --confidence 0.9",
    "route": "cfn route coder --complexity high",
    "serve": "cfn serve --port 3000",
    "mcp serve": "claude mcp add-json cfn \"$(cfn mcp config)\"",
    "mcp config": "claude mcp add-json cfn \"$(cfn mcp config)\"",
    "mcp skills": "cfn mcp skills --json",
    "session exec": "cfn session exec S1 -- pytest -q",
    "session ls": "cfn session ls",
    "session start": "cfn session start --id S1 --timeout 3600",
    "session stop": "cfn session stop S1",
    "signal send": "cfn signal send --task-id T --channel start-loop2 --payload '{\"go\":1}'",
    "signal wait": "cfn signal wait --task-id T --channel start-loop2 --timeout 300",
    "skills add": "cfn skills add skills/redis-coordination/signal.sh",
    "skills approve": "cfn skills approve signal --agent-id reviewer-1 --confidence 0.9",
    "skills escalate": "cfn skills escalate signal --agent-id reviewer-1 --note 'needs a human'",
    "skills evaluate": "cfn skills evaluate signal --risk 0.2 --coverage 0.97",
    "skills history": "cfn skills history signal",
    "skills ls": "cfn skills ls",
    "skills reject": "cfn skills reject signal --agent-id reviewer-1 --note 'unsafe'",
    "spawn-agent": "cfn spawn-agent coder-1 T --prompt 'Add login' --runtime container",
    "token issue": "cfn token issue --agent-id coder-1 --task-id T --ttl 3600 > token.jwt",
    "token verify": "cfn token verify < token.jwt",
    "token mcp-key": "cfn token mcp-key playwright > playwright.key",
    "worktree down": "cfn worktree down feature/auth --volumes",
    "worktree env": 'eval "$(cfn worktree env feature/auth)"',
    "worktree ls": "cfn worktree ls",
    "worktree ports": "cfn worktree ports feature/auth",
    "worktree up": "cfn worktree up feature/auth",
}


def add(command: click.Command, path: str) -> None:
    """Give `command` (and, for a group, its commands) its example, once."""
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            add(sub, f"{path} {name}")
    elif path in EXAMPLES and not command.epilog:
        command.epilog = f"\b\nExample:\n  {EXAMPLES[path]}"
