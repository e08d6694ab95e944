"""Worktrees: a git worktree per branch with its own collision-free ports and compose stack."""
