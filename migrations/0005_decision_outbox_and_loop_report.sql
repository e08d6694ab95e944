-- Decisions are published to Redis from their SQLite record, as an outbox: published_at
-- stays NULL until Redis holds the decision, so a process killed in between leaves it for
-- the next one to publish. Decisions recorded before this migration were published.
ALTER TABLE decisions ADD COLUMN published_at TEXT;
UPDATE decisions SET published_at = created_at;
-- A loop that ended keeps its final report: `cfn loop resume` gives it back unchanged.
ALTER TABLE tasks ADD COLUMN report TEXT;
