"""Every Redis key cfn reads or writes is built here, and documented in docs/keys.md.

Each key carries the task ID as a cluster hash tag (`{T}`), so all keys of one
task land in one slot and multi-key scripts stay valid on Redis Cluster.
"""

from cfn.ids import validate_id


def _tag(task_id: str) -> str:
    return "{" + validate_id(task_id, "task ID") + "}"


def context(task_id: str, key: str) -> str:
    """String: a context value stored by `cfn context store`."""
    return f"context:{_tag(task_id)}:{validate_id(key, 'context key')}"


def context_prefix(task_id: str) -> str:
    """Prefix of all context keys of a task (IDs hold no glob characters)."""
    return f"context:{_tag(task_id)}:"


def signal(task_id: str, channel: str) -> str:
    """List: a FIFO of signal payloads; RPUSH to send, BLPOP to wait."""
    return f"coord:{_tag(task_id)}:signal:{validate_id(channel, 'channel')}"


def signal_sent(task_id: str, channel: str, signal_id: str) -> str:
    """String: marks a signal as sent, so a retried send after a lost reply is a no-op."""
    return f"{signal(task_id, channel)}:sent:{signal_id}"


def signal_taking(task_id: str, channel: str, waiter: str) -> str:
    """List: the signal a waiter has taken but not yet acknowledged (at most one)."""
    return f"{signal(task_id, channel)}:taking:{waiter}"


def signal_waiters(task_id: str, channel: str) -> str:
    """Sorted set: waiters of the channel by the end of their lease (server ms); a signal
    taken by a waiter whose lease ran out goes back to the head of the channel."""
    return f"{signal(task_id, channel)}:waiters"


def appended(stream_key: str, entry_id: str) -> str:
    """String: the stream entry an ID'd append made (a retried append returns it)."""
    return f"{stream_key}:sent:{entry_id}"


def results(task_id: str) -> str:
    """Stream: one entry per report (fields agent, status, [confidence], [result], ts)."""
    return f"coord:{_tag(task_id)}:results"


def completion(task_id: str, phase: str | None = None) -> str:
    """Stream: one entry per finished agent (fields agent, status, [payload], ts)."""
    if phase is None:
        return f"coord:{_tag(task_id)}:complete"
    return f"coord:{_tag(task_id)}:{validate_id(phase, 'phase')}:complete"


def decision(task_id: str) -> str:
    """String: the latest product-owner decision, as JSON."""
    return f"coord:{_tag(task_id)}:decision"


def events(task_id: str) -> str:
    """Stream: the loop's events (type, iteration, data JSON) for anyone to follow."""
    return f"coord:{_tag(task_id)}:events"


def orchestrator(task_id: str) -> str:
    """String with a short TTL: the loop's orchestrator is alive while it exists."""
    return f"coord:{_tag(task_id)}:orchestrator"


def heartbeat(task_id: str, agent_id: str) -> str:
    """String with a short TTL: the agent's supervisor is alive while it exists."""
    return f"agent:{_tag(task_id)}:{validate_id(agent_id, 'agent ID')}:heartbeat"


def provider_cooldown(provider: str) -> str:
    """String with a TTL: the provider failed (rate limit, overload, 5xx); skip it until then."""
    return f"cfn:provider:{validate_id(provider, 'provider')}:cooldown"


def task_patterns(task_id: str) -> list[str]:
    """ACL key patterns covering every key of one task (and nothing of another)."""
    tag = _tag(task_id)
    return [f"context:{tag}:*", f"coord:{tag}:*", f"lock:{tag}:*", f"agent:{tag}:*"]


def scan_patterns() -> list[str]:
    """SCAN patterns covering cfn's coordination keys of every task, and the provider
    cooldowns (not the failover's or the worker daemon's own keys)."""
    return ["context:{*}:*", "coord:{*}:*", "lock:{*}:*", "agent:{*}:*", "cfn:provider:*"]


def kind(key: str) -> str | None:
    """What a coordination key is, by its name (docs/keys.md), None for a name cfn does not
    make: context, events, sent (an append's or send's marker), orchestrator, coord (any
    other coord:{T}: key), lock, lock-fence, lock-wake, heartbeat, cooldown."""
    family, _, rest = key.partition(":")
    if family == "cfn":
        return "cooldown" if key.startswith("cfn:provider:") and key.endswith(":cooldown") \
            else None
    if not rest.startswith("{") or "}:" not in rest:
        return None
    parts = rest.split("}:", 1)[1].split(":")
    if family == "context":
        return "context"
    if family == "coord":
        if len(parts) >= 3 and parts[-2] == "sent":  # a phase may be called sent
            return "sent"
        return {"events": "events", "orchestrator": "orchestrator"}.get(parts[0], "coord") \
            if len(parts) == 1 else "coord"
    if family == "lock":
        return {1: "lock", 2: {"fence": "lock-fence", "wake": "lock-wake"}.get(parts[-1])
                }.get(len(parts))
    if family == "agent":
        return "heartbeat" if len(parts) == 2 and parts[1] == "heartbeat" else None
    return None


def agent_patterns(task_id: str, *, read_selectors: bool) -> list[str]:
    """ACL key patterns for an agent of the task (docs/security.md).

    It may write shared context, signals, locks and results (its reports are signed, so
    nobody can report in its name). Completion records, decisions, events and heartbeats
    are the trusted side's to write. With Redis 7 read selectors it may read every key of
    its task; on older servers it sees only what it may write.
    """
    tag = _tag(task_id)
    writable = [f"context:{tag}:*", f"coord:{tag}:signal:*", f"lock:{tag}:*",
                f"coord:{tag}:results", f"coord:{tag}:results:sent:*"]
    # cfn:failover names the server holding the keys (cfn.failover), which agents follow
    readable = [f"%R~{pattern}" for pattern in (*task_patterns(task_id), "cfn:failover")] \
        if read_selectors else []
    return [*writable, *readable]


def lock(task_id: str, name: str) -> str:
    """String: the holder's token, with the lock's TTL."""
    return f"lock:{_tag(task_id)}:{validate_id(name, 'lock name')}"


def lock_fence(task_id: str, name: str) -> str:
    """Integer: the fencing counter, incremented by every acquisition; never expires."""
    return lock(task_id, name) + ":fence"


def lock_wake(task_id: str, name: str) -> str:
    """List: a release pushes here so blocked acquirers wake at once."""
    return lock(task_id, name) + ":wake"


# --- the worker daemon (cfn.daemon); NS is the project's queue namespace ------------------

def _daemon(namespace: str) -> str:
    return "cfn:daemon:{" + validate_id(namespace, "daemon queue namespace") + "}"


def daemon_schedule(namespace: str) -> str:
    """Sorted set: worker -> when its next scheduled run is due (unix seconds)."""
    return f"{_daemon(namespace)}:schedule"


def daemon_last(namespace: str) -> str:
    """Hash: worker -> its last run's summary (JSON: status, job, times, reason)."""
    return f"{_daemon(namespace)}:last"


def daemon_alive(namespace: str, daemon_id: str) -> str:
    """String with a short TTL: a daemon serving the queue is alive while it exists (JSON)."""
    return f"{_daemon(namespace)}:alive:{validate_id(daemon_id, 'daemon ID')}"


def daemon_alive_pattern(namespace: str) -> str:
    return f"{_daemon(namespace)}:alive:*"


def daemon_headless_runs(namespace: str) -> str:
    """Sorted set: job ID -> start time of each headless run (the per-hour/day budgets)."""
    return f"{_daemon(namespace)}:headless-runs"


def daemon_spend(namespace: str, day: str) -> str:
    """Float string: US dollars headless runs spent on `day` (YYYY-MM-DD, UTC)."""
    return f"{_daemon(namespace)}:spend:{validate_id(day, 'day')}"


def daemon_queue(namespace: str, priority: str) -> str:
    """The rq queue name (not a key: rq keeps it as rq:queue:NAME) of one priority."""
    return f"cfn-daemon-{validate_id(namespace, 'daemon queue namespace')}-{priority}"
