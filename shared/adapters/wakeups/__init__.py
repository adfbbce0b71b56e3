"""JobWakeups adapters: in-process (embedded mode) and Redis pub/sub (API and workers apart)."""
