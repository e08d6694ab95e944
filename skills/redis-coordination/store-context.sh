#!/usr/bin/env bash
# Store a context value for a task.
# Usage: store-context.sh --task-id T --key K --value V [--ttl SECONDS] [--json]
exec "${CFN_BIN:-cfn}" context store "$@"
