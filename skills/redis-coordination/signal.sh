#!/usr/bin/env bash
# Send or wait for a signal (the payload of a received signal is printed on stdout).
# Usage: signal.sh send --task-id T --channel C --payload P
#        signal.sh wait --task-id T --channel C [--timeout SECONDS]   (exit 3 on timeout)
exec "${CFN_BIN:-cfn}" signal "$@"
