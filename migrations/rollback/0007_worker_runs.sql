DROP TABLE worker_runs;
