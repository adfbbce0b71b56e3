"""Coalescing records in SQLite (tables `coalescing_keys` and `job_followers`, sqlite_schema.py).

Written without waiting for the disk: a key or follower row lost with the machine costs at most
one more LLM call, or a follower settled when the embedded start-up enqueues it again.
"""

from __future__ import annotations

import sqlite3

KEY_HOLDER = "SELECT holder FROM coalescing_keys WHERE tenant = ? AND cache_key = ?"
TAKE_FREE_KEY = "INSERT OR IGNORE INTO coalescing_keys (tenant, cache_key, holder) VALUES (?, ?, ?)"
TAKE_HELD_KEY = (
    "UPDATE coalescing_keys SET holder = ? WHERE tenant = ? AND cache_key = ? AND holder = ?"
)
RELEASE_KEY = "DELETE FROM coalescing_keys WHERE tenant = ? AND cache_key = ? AND holder = ?"
ADD_FOLLOWER = "INSERT OR IGNORE INTO job_followers (leader_id, follower_id) VALUES (?, ?)"
FOLLOWERS = "SELECT follower_id FROM job_followers WHERE leader_id = ? ORDER BY follower_id"
DROP_FOLLOWERS = "DELETE FROM job_followers WHERE leader_id = ?"


def take_key(
    db: sqlite3.Connection, tenant: str, cache_key: str, job_id: str, replacing: str | None
) -> bool:
    if replacing is None:
        return db.execute(TAKE_FREE_KEY, (tenant, cache_key, job_id)).rowcount == 1
    return db.execute(TAKE_HELD_KEY, (job_id, tenant, cache_key, replacing)).rowcount == 1
