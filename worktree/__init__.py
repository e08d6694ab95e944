"""Templates for per-worktree compose overrides, shipped as cfn._worktree."""
