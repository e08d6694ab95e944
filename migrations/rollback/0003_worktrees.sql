DROP TABLE port_leases;
DROP TABLE worktrees;
