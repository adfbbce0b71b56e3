"""`WorkerRegistry` adapters: where workers' heartbeats are kept (shared/heartbeats.py)."""
