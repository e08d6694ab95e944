#!/usr/bin/env bash
# Run the CFN Loop for a task (the seed's orchestrate.sh).
# Usage: orchestrate.sh --task-id T --mode mvp|standard|enterprise --epic TEXT [cfn loop run options]
# Exit 0 PROCEED; 1 ABORT, iteration limit or budget spent; 2 bad input.
exec "${CFN_BIN:-cfn}" loop run "$@"
