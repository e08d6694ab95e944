"""Running agents: profiles, spawning under a supervisor, runtimes, lifecycle."""
