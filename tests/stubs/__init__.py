"""Stub servers that stand in for paid APIs in tests."""
