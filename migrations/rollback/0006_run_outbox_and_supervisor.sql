ALTER TABLE agents DROP COLUMN supervisor_pid;
ALTER TABLE agents DROP COLUMN outbox;
