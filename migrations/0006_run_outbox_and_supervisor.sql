-- A finished run's Redis records (its report and completion record) are published from
-- SQLite, as an outbox: `outbox` holds them until Redis does, so a supervisor killed in
-- between leaves them for the next process that looks. Runs recorded before were published.
ALTER TABLE agents ADD COLUMN outbox TEXT;
-- The pid of the supervisor running a run: a run whose supervisor lives is not lost while
-- its heartbeat lapses (a Redis outage), and one whose supervisor died is, at once.
ALTER TABLE agents ADD COLUMN supervisor_pid INTEGER;
