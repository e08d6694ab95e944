-- The CFN Loop: a task keeps the options it was started with (for `cfn loop resume`),
-- and each agent run records the loop phase it belonged to.
ALTER TABLE tasks ADD COLUMN spec TEXT;
ALTER TABLE agents ADD COLUMN phase TEXT;
ALTER TABLE loop_iterations ADD COLUMN reason TEXT;
