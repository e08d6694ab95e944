-- Rollback of 0001_initial: drops every table it created (children first).
DROP TABLE approval_history;
DROP TABLE skills;
DROP TABLE cost_ledger;
DROP TABLE decisions;
DROP TABLE results;
DROP TABLE agents;
DROP TABLE loop_iterations;
DROP TABLE tasks;
