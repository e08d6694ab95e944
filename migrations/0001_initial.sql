-- The persistent layer: what must outlive Redis. See docs/schema.md.

CREATE TABLE tasks (
    id          TEXT PRIMARY KEY,               -- the task ID (cfn/ids.py pattern)
    epic        TEXT,
    mode        TEXT,                           -- mvp | standard | enterprise
    status      TEXT NOT NULL DEFAULT 'open',
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE loop_iterations (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id           TEXT NOT NULL REFERENCES tasks(id),
    iteration         INTEGER NOT NULL,
    gate_score        REAL,                     -- NULL: no score was given, never a default
    gate_passed       INTEGER,
    consensus_score   REAL,
    consensus_passed  INTEGER,
    decision          TEXT,                     -- PROCEED | ITERATE | ABORT
    feedback          TEXT,                     -- JSON
    started_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at       TEXT,
    UNIQUE (task_id, iteration)
);

CREATE TABLE agents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,  -- one row per run of an agent
    task_id      TEXT NOT NULL REFERENCES tasks(id),
    agent_id     TEXT NOT NULL,
    agent_type   TEXT,
    iteration    INTEGER,
    runtime      TEXT,                          -- process | container | kubernetes
    provider     TEXT,
    model        TEXT,
    handle       TEXT,                          -- pid, container ID or job name
    status       TEXT NOT NULL DEFAULT 'pending',
    exit_code    INTEGER,
    confidence   REAL,
    log_path     TEXT,
    started_at   TEXT,
    finished_at  TEXT
);
CREATE INDEX agents_task ON agents (task_id, agent_id);

CREATE TABLE results (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id      TEXT NOT NULL REFERENCES tasks(id),
    agent_id     TEXT NOT NULL,
    entry_id     TEXT NOT NULL,                 -- the Redis stream entry it came from
    status       TEXT NOT NULL,
    confidence   REAL,                          -- NULL when the agent gave none
    result       TEXT,                          -- JSON
    reported_at  REAL NOT NULL,
    recorded_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (task_id, agent_id, entry_id)
);

CREATE TABLE decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES tasks(id),
    iteration   INTEGER,
    decision    TEXT NOT NULL CHECK (decision IN ('PROCEED', 'ITERATE', 'ABORT')),
    decided_by  TEXT,
    confidence  REAL,
    reason      TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX decisions_task ON decisions (task_id);

CREATE TABLE cost_ledger (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        TEXT NOT NULL REFERENCES tasks(id),
    agent_id       TEXT NOT NULL,
    run_id         INTEGER REFERENCES agents(id),
    provider       TEXT,
    model          TEXT,
    input_tokens   INTEGER,
    output_tokens  INTEGER,
    cost_usd       REAL,
    recorded_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX cost_ledger_task ON cost_ledger (task_id);

CREATE TABLE skills (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT UNIQUE NOT NULL,
    content_hash  TEXT NOT NULL,                -- sha256 of the skill's content
    content_path  TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'approved', 'rejected', 'escalated')),
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE approval_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    skill_id    INTEGER NOT NULL REFERENCES skills(id),
    agent_id    TEXT,
    decision    TEXT NOT NULL,                  -- approve | reject | escalate | review | added | changed
    confidence  REAL,
    metadata    TEXT,                           -- JSON: note, rule, risk, coverage, content_hash
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX approval_history_skill ON approval_history (skill_id);
