-- Worktrees and their port leases. A port is leased to at most one worktree: it is the key.
CREATE TABLE worktrees (
    branch       TEXT PRIMARY KEY,
    slug         TEXT UNIQUE NOT NULL,          -- COMPOSE_PROJECT_NAME is cfn-<slug>
    path         TEXT NOT NULL,
    base         TEXT,
    stack        TEXT NOT NULL DEFAULT 'down',  -- up | down
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE port_leases (
    port     INTEGER PRIMARY KEY,
    branch   TEXT NOT NULL REFERENCES worktrees(branch),
    service  TEXT NOT NULL,
    UNIQUE (branch, service)
);
