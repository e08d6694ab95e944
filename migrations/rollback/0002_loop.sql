ALTER TABLE loop_iterations DROP COLUMN reason;
ALTER TABLE agents DROP COLUMN phase;
ALTER TABLE tasks DROP COLUMN spec;
