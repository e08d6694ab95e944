"""The worker daemon: scheduled local and headless Claude Code workers, in sandboxes, fed
by a Redis queue (docs/daemon.md).

    workers   the twelve workers, as data a project overrides (workers/*.toml)
    service   the daemon process: one per project here, a heartbeat, a maximum lifetime
    queue     the rq queue: priorities, at-least-once, retries, dead letters, result TTLs
    runner    one job: its mode, its budget, the run, its record
    headless  Claude Code runs of a worker's prompt, through the agent supervisor
    local     the workers' local versions
    context   the files a headless prompt carries
    jobs      triggering a worker and waiting for it
    status    what `cfn daemon status` shows
"""
