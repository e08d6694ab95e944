-- The worker daemon's runs (cfn.daemon): one row per job a daemon of this machine ran,
-- local or headless, with its result, or why it was skipped or failed. A headless run's
-- agent run (its tokens and cost are in cost_ledger) is `agent_run_id`.
CREATE TABLE worker_runs (
    id INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    worker TEXT NOT NULL,
    origin TEXT NOT NULL,            -- schedule | trigger
    mode TEXT NOT NULL,              -- local | headless (what ran, not what was configured)
    sandbox TEXT,                    -- strict | permissive | disabled (headless runs)
    model TEXT,
    status TEXT NOT NULL,            -- running | success | failure | skipped | error
    reason TEXT,                     -- why it failed or was skipped, or why it ran local
    agent_run_id INTEGER REFERENCES agents(id),
    result TEXT,                     -- JSON: what the worker found (parsed output)
    output TEXT,                     -- a headless run's raw answer, kept when unparsable
    violations TEXT,                 -- JSON: what the sandbox refused the worker
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_usd REAL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX worker_runs_by_worker ON worker_runs (worker, id);
