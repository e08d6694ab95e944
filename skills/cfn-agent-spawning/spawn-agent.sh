#!/usr/bin/env bash
# Spawn an agent under a cfn supervisor (the seed's signature).
# Usage: spawn-agent.sh AGENT_ID TASK_ID [MODE] [PROVIDER] [cfn spawn-agent options] [-- COMMAND...]
# AGENT_MEMORY_LIMIT / AGENT_CPU_LIMIT set the limits, as in the seed (explicit options win).
exec "${CFN_BIN:-cfn}" spawn-agent \
  ${AGENT_MEMORY_LIMIT:+--memory "$AGENT_MEMORY_LIMIT"} ${AGENT_CPU_LIMIT:+--cpus "$AGENT_CPU_LIMIT"} "$@"
