"""Dynamic shell completion (`cfn completion bash|zsh|fish`): task and agent IDs from the
project's database, profile names, git branches. Best effort and read-only: anything that
fails completes nothing, and completing never creates or starts anything."""

from __future__ import annotations

import subprocess

import click


def _known_ids() -> tuple[list[str], list[str]]:
    """(task IDs, agent IDs) from the project's database, if it has one."""
    try:
        from cfn.agents.runs import known_ids
        from cfn.config import resolve
        from cfn.db import open_existing_read_only

        db = open_existing_read_only(resolve(flags={}).home)
        if db is None:
            return [], []
        with db:
            return known_ids(db)
    except Exception:  # a shell is asking: say nothing rather than fail
        return [], []


def _starting(names: list[str], incomplete: str) -> list[str]:
    return sorted({name for name in names if name.startswith(incomplete)})


def tasks(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    return _starting(_known_ids()[0], incomplete)


def agents(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    return _starting(_known_ids()[1], incomplete)


def profiles(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    try:
        from cfn.agents.profiles import load_all
        from cfn.config import resolve

        return _starting(list(load_all(resolve(flags={}).root)), incomplete)
    except Exception:
        return []


def branches(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    try:
        found = subprocess.run(["git", "branch", "--format=%(refname:short)"],
                               capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return _starting(found.split(), incomplete)
