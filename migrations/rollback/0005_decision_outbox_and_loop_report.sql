ALTER TABLE tasks DROP COLUMN report;
ALTER TABLE decisions DROP COLUMN published_at;
