"""Worker definitions (TOML), shipped inside the package as cfn._workers (see cfn/daemon/workers.py)."""
