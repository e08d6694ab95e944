#!/usr/bin/env bash
# Wait for the expected number of agent reports and judge the quorum (never consumes them).
# Usage: collect-results.sh --task-id T --expected N --threshold F [--timeout SECONDS] [--json]
# Exit 0 quorum met, 1 not met, 3 timed out (what arrived is still printed).
exec "${CFN_BIN:-cfn}" collect-results "$@"
