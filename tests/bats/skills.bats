#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# The redis-coordination skills, run as agents run them, against a real redis-server.

SKILLS="$BATS_TEST_DIRNAME/../../skills/redis-coordination"

load helpers

setup_file() {
  start_redis
}

teardown_file() {
  stop_redis
}

setup() {
  redis-cli -s "$REDIS_DIR/redis.sock" flushall >/dev/null
}

@test "store-context.sh stores a value with a TTL" {
  run "$SKILLS/store-context.sh" --task-id T1 --key deliverables --value '["a.py"]' --ttl 3600
  [ "$status" -eq 0 ]
  run cfn context get --task-id T1 --key deliverables
  [ "$output" = '["a.py"]' ]
  ttl=$(redis-cli -s "$REDIS_DIR/redis.sock" TTL 'context:{T1}:deliverables')
  [ "$ttl" -gt 0 ] && [ "$ttl" -le 3600 ]
}

@test "store-context.sh rejects a bad task ID with exit 2 and writes nothing" {
  run "$SKILLS/store-context.sh" --task-id 'T 1' --key k --value v
  [ "$status" -eq 2 ]
  [ "$(redis-cli -s "$REDIS_DIR/redis.sock" DBSIZE)" -eq 0 ]
}

@test "signal.sh send then wait delivers the payload on stdout" {
  run "$SKILLS/signal.sh" send --task-id T1 --channel agent-complete --payload '{"agent":"a1"}'
  [ "$status" -eq 0 ]
  run "$SKILLS/signal.sh" wait --task-id T1 --channel agent-complete --timeout 5
  [ "$status" -eq 0 ]
  [ "$output" = '{"agent":"a1"}' ]
}

@test "signal.sh wait times out with exit 3" {
  run "$SKILLS/signal.sh" wait --task-id T1 --channel start-loop2 --timeout 0.2
  [ "$status" -eq 3 ]
}

@test "signal.sh wait receives a signal sent while it blocks" {
  ( sleep 0.3; "$SKILLS/signal.sh" send --task-id T1 --channel late --payload later ) &
  run "$SKILLS/signal.sh" wait --task-id T1 --channel late --timeout 20
  wait
  [ "$status" -eq 0 ]
  [ "$output" = "later" ]
}

@test "collect-results.sh meets the quorum and jq can read its JSON" {
  cfn report --task-id T1 --agent-id a1 --confidence 0.9
  cfn report --task-id T1 --agent-id a2 --confidence 0.8
  run --separate-stderr "$SKILLS/collect-results.sh" --task-id T1 --expected 2 --threshold 0.9 --json
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.met and .count == 2 and .quorum == 2'
}

@test "collect-results.sh exits 1 when the quorum is not met" {
  cfn report --task-id T1 --agent-id a1 --status failure
  run "$SKILLS/collect-results.sh" --task-id T1 --expected 1 --threshold 1
  [ "$status" -eq 1 ]
}

@test "collect-results.sh exits 3 at the timeout and prints what arrived" {
  cfn report --task-id T1 --agent-id a1 --confidence 0.9
  run "$SKILLS/collect-results.sh" --task-id T1 --expected 3 --threshold 0.5 --timeout 0.3
  [ "$status" -eq 3 ]
  [[ "$output" == *"a1"* ]]
}

@test "collect-results.sh rejects a bad threshold with exit 2" {
  run "$SKILLS/collect-results.sh" --task-id T1 --expected 3 --threshold 2
  [ "$status" -eq 2 ]
}
