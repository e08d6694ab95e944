"""Named defaults, in one place (as rq's defaults.py). Settings a user may change are
declared in cfn.config with these as their defaults; the rest are fixed policy."""

# --- settings (cfn.config overrides them) -------------------------------------------------
CONNECT_TIMEOUT_S = 10.0
RETRIES = 3
RECONNECT_WINDOW_S = 60.0  # a connection lost after connecting is retried this long
KEY_TTL_S = 7 * 24 * 3600  # signals, results, completions, events after their last write
MAX_PAYLOAD_BYTES = 1024 * 1024
AGENT_IMAGE = "localhost/cfn-agent:latest"
SKILL_APPROVE_RISK = 0.30
SKILL_APPROVE_COVERAGE = 0.95
SKILL_ESCALATE_RISK = 0.60
# provider routing, as in the seed (used when custom routing is on)
DEFAULT_PROVIDER = "kimi"
COST_PROVIDER = "zai"
HIGH_COMPLEXITY_PROVIDER = "anthropic"
ROUTING_OFF_PROVIDER = "anthropic"

# --- input limits ------------------------------------------------------------------------
# The longest wait, timeout, lease or TTL an option takes: beyond it Redis refuses the expiry
# or a deadline stops being a time, and a month outlasts any task.
MAX_SECONDS = 30 * 24 * 3600
MAX_COUNT = 2**63 - 1  # SQLite's largest integer: counts, iterations and versions stop here

# --- Redis -----------------------------------------------------------------------------
# No single blocking call holds the socket longer than this; longer waits are made of
# such slices, so a socket timeout can stay short and a dead server is noticed.
MAX_BLOCK_S = 5.0
EVENTS_MAXLEN = 10_000  # a loop's event stream keeps about this many entries

# --- agents ------------------------------------------------------------------------------
HEARTBEAT_EVERY_S = 2.0
HEARTBEAT_TTL_S = 10
ORCHESTRATOR_TTL_S = 10  # a loop's orchestrator beats every HEARTBEAT_EVERY_S too
STARTUP_GRACE_S = 15.0  # a claim covers an agent until its supervisor's first heartbeat
LIVENESS_CHECK_S = 1.0  # how often waits look for supervisors that died
OUTBOX_GRACE_S = 5.0  # a run's records unpublished this long after SQLite had them: publish
PROVIDER_COOLDOWN_S = 60
PROGRESS_EVERY_S = 30.0  # a piped wait says it is still waiting this often
SUPERVISOR_IDLE_S = 300.0  # the project's supervisor leaves after this long with no agents
AGENT_WAIT_S = 7 * 24 * 3600  # `spawn-agent --wait`: the supervisor enforces the real timeout

# --- the worker daemon ------------------------------------------------------------------
# A forgotten daemon once ran AI workers for 19 days: every daemon stops itself, and
# headless runs stop at their budgets.
DAEMON_MAX_LIFETIME_S = 12 * 3600
DAEMON_MAX_CONCURRENT = 2  # the seed's maxConcurrent
DAEMON_RUNS_PER_HOUR = 6
DAEMON_RUNS_PER_DAY = 48
DAEMON_SPEND_PER_DAY_USD = 5.0
DAEMON_TICK_S = 1.0  # the scheduler looks for due workers this often
DAEMON_ALIVE_TTL_S = 15  # a daemon's heartbeat key lives this long after its last beat
# a job's consumer beats every MONITOR_S; a job unbeaten for MONITOR_S + MARGIN_S is
# abandoned (its daemon died) and another daemon takes it over: the visibility timeout
DAEMON_MONITOR_S = 5
DAEMON_VISIBILITY_MARGIN_S = 10
DAEMON_RESULT_TTL_S = 7 * 24 * 3600  # finished jobs' results
DAEMON_DEAD_TTL_S = 30 * 24 * 3600  # jobs that failed every retry (the dead letters)
# a failed job's retries and their delays; the first is at once, so a job whose daemon died
# is taken over within the visibility timeout, not a backoff later
DAEMON_RETRY_BACKOFF_S = (0, 30, 300)
DAEMON_MAINTENANCE_S = 5  # consumers take over a dead daemon's delayed retries this often

# --- the loop ------------------------------------------------------------------------------
LOOP_WAIT_MARGIN_S = 120  # past the longest agent timeout, a phase stops waiting
