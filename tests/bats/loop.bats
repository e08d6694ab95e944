#!/usr/bin/env bats
bats_require_minimum_version 1.5.0
# skills/cfn-loop-orchestration/orchestrate.sh with the seed's flags.

SKILL="$BATS_TEST_DIRNAME/../../skills/cfn-loop-orchestration/orchestrate.sh"

load helpers

setup_file() {
  start_redis
  export WORK="$BATS_FILE_TMPDIR/work"
  mkdir -p "$WORK/agents"
  touch "$WORK/a.txt"  # the implementers' deliverable: the loop checks it exists
  for role in impl rev po; do
    case $role in
      impl) say='{"confidence": 0.9, "deliverables": ["a.txt"]}' ;;
      rev) say='{"confidence": 0.95}' ;;
      po) say='{"decision": "PROCEED", "reason": "done"}' ;;
    esac
    literal=${say//\{/\{\{}; literal=${literal//\}/\}\}}
    printf 'id = "%s"\nname = "%s"\nkind = "scripted"\ncommand = ["/bin/echo", %s]\n' \
      "$role" "$role" "$(jq -Rn --arg s "$literal" '$s')" > "$WORK/agents/$role.toml"
  done
}

teardown_file() {
  stop_redis
}

@test "orchestrate.sh runs the loop to PROCEED with the seed's flags" {
  cd "$WORK"
  run --separate-stderr "$SKILL" --task-id T1 --mode mvp --epic "Ship a.txt" --loop3-agents impl \
    --loop2-agents rev --product-owner po --json
  [ "$status" -eq 0 ]
  echo "$output" | jq -e '.status == "proceeded" and (.iterations | length) == 1'
}

@test "orchestrate.sh rejects an unknown mode with exit 2" {
  cd "$WORK"
  run "$SKILL" --task-id T2 --mode reckless --epic "x"
  [ "$status" -eq 2 ]
}
