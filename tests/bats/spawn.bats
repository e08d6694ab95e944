#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# skills/cfn-agent-spawning/spawn-agent.sh against a real redis-server and real supervisors.

SKILL="$BATS_TEST_DIRNAME/../../skills/cfn-agent-spawning/spawn-agent.sh"

load helpers

setup_file() {
  start_redis
  export WORK="$BATS_FILE_TMPDIR/work"
  mkdir -p "$WORK"
}

teardown_file() {
  stop_redis
}

@test "spawn-agent.sh runs a scripted agent and the task sees its completion" {
  cd "$WORK"
  run --separate-stderr "$SKILL" tests-1 T1 --profile script --json -- sh -c 'echo "{\"confidence\": 0.9}"'
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.agent_id == "tests-1" and .run_id > 0'
  run --separate-stderr cfn agents wait --task-id T1 --timeout 60 --json
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.records["tests-1"].status == "success" and .records["tests-1"].confidence == 0.9'
}

@test "spawn-agent.sh reports a failing agent with exit 1 from wait" {
  cd "$WORK"
  "$SKILL" fail-1 T2 --profile script -- sh -c 'exit 7' >/dev/null
  run --separate-stderr cfn agents wait fail-1 --task-id T2 --timeout 60 --json
  [ "$status" -eq 1 ]
  echo "$output" | jq -e '.records["fail-1"].exit_code == 7'
}

@test "spawn-agent.sh takes the seed's AGENT_MEMORY_LIMIT without breaking the command" {
  cd "$WORK"
  AGENT_MEMORY_LIMIT=256m run "$SKILL" mem-1 T3 --profile script --json -- echo hello
  [ "$status" -eq 0 ]
  run cfn agents wait mem-1 --task-id T3 --timeout 60
  [ "$status" -eq 0 ]
  run cfn agents logs mem-1 --task-id T3
  [ "$output" = "hello" ]
}

@test "spawn-agent.sh without a task ID exits 2" {
  run "$SKILL" only-agent
  [ "$status" -eq 2 ]
}
