# Shared by the bats files: a real redis-server on a unix socket for the whole file.

start_redis() {
  export REDIS_DIR="$BATS_FILE_TMPDIR/redis"
  mkdir -p "$REDIS_DIR"
  # as in production: nobody gets in without a password (agents get their own ACL users)
  export REDIS_PASSWORD="bats-$RANDOM$RANDOM" REDISCLI_AUTH
  REDISCLI_AUTH="$REDIS_PASSWORD"
  redis-server --port 0 --unixsocket "$REDIS_DIR/redis.sock" --save "" --appendonly no \
    --requirepass "$REDIS_PASSWORD" \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR"
  for _ in $(seq 100); do redis-cli -s "$REDIS_DIR/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
  export REDIS_URL="unix://$REDIS_DIR/redis.sock"
  export CFN_HOME="$BATS_FILE_TMPDIR/cfn-home"
  export CFN_SUPERVISOR_IDLE_S=5  # the supervisor leaves soon after the last agent
}

stop_redis() {
  kill "$(cat "$REDIS_DIR/redis.pid")"
}
