"""Each API key's counters in SQLite (the KeyCounters port): tables `key_months`, `key_in_flight`
and `key_minutes`.

Every write runs in the store's single write transaction (`BEGIN IMMEDIATE`, which also
serialises writers in other processes sharing the file), so a reservation's read and its
conditional UPDATE are one compare-and-set: of concurrent reservations against a limit, exactly as
many as fit succeed, whichever process made them. A job's own changes move its key's counters in
the transaction of the change (`apply_key_deltas`, called by sqlite_changes.py).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from shared.key_usage import KeyDeltas, KeyMonth, minute_of

KEY_COUNTERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS key_months (
    key_id TEXT NOT NULL,
    month TEXT NOT NULL,
    requests INTEGER NOT NULL DEFAULT 0,
    tokens INTEGER NOT NULL DEFAULT 0,
    alerted TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (key_id, month)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_in_flight (
    key_id TEXT PRIMARY KEY,
    jobs INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS key_minutes (
    key_id TEXT NOT NULL,
    minute TEXT NOT NULL,
    tokens INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, minute)
) WITHOUT ROWID;
"""
MINUTES_KEPT = timedelta(hours=1)  # older minute rows are pruned as new ones are written

NEW_MONTH = "INSERT OR IGNORE INTO key_months (key_id, month) VALUES (?, ?)"
RESERVE = (
    "UPDATE key_months SET requests = requests + ?, tokens = tokens + ?"
    " WHERE key_id = ? AND month = ? AND (? IS NULL OR requests + ? <= ?)"
    " AND (? IS NULL OR tokens + ? <= ?)"
    " RETURNING requests, tokens, alerted"
)
MOVE_MONTH = (
    "UPDATE key_months SET requests = requests + ?, tokens = tokens + ?"
    " WHERE key_id = ? AND month = ?"
)
READ_MONTH = "SELECT requests, tokens, alerted FROM key_months WHERE key_id = ? AND month = ?"
MARK_ALERTED = (
    "UPDATE key_months SET alerted = alerted || ? || ','"
    " WHERE key_id = ? AND month = ? AND instr(',' || alerted, ',' || ? || ',') = 0"
)
NEW_FLIGHT = "INSERT OR IGNORE INTO key_in_flight (key_id) VALUES (?)"
ENTER = "UPDATE key_in_flight SET jobs = jobs + ? WHERE key_id = ? AND jobs + ? <= ?"
MOVE_FLIGHT = "UPDATE key_in_flight SET jobs = jobs + ? WHERE key_id = ?"
READ_FLIGHT = "SELECT jobs FROM key_in_flight WHERE key_id = ?"
ADD_MINUTE = (
    "INSERT INTO key_minutes (key_id, minute, tokens) VALUES (?, ?, ?)"
    " ON CONFLICT (key_id, minute) DO UPDATE SET tokens = tokens + excluded.tokens"
)
PRUNE_MINUTES = "DELETE FROM key_minutes WHERE key_id = ? AND minute < ?"
READ_MINUTE = "SELECT tokens FROM key_minutes WHERE key_id = ? AND minute = ?"


def reserve(
    db: sqlite3.Connection,
    key_id: str,
    month: str,
    requests: int,
    tokens: int,
    max_requests: int | None,
    max_tokens: int | None,
) -> KeyMonth | None:
    db.execute(NEW_MONTH, (key_id, month))
    limits = (max_requests, requests, max_requests, max_tokens, tokens, max_tokens)
    params = (requests, tokens, key_id, month, *limits)
    row = db.execute(RESERVE, params).fetchone()
    return key_month_of(row) if row else None


def unreserve(db: sqlite3.Connection, key_id: str, month: str, requests: int, tokens: int) -> None:
    db.execute(MOVE_MONTH, (-requests, -tokens, key_id, month))


def mark_alerted(db: sqlite3.Connection, key_id: str, month: str, kind: str) -> bool:
    db.execute(NEW_MONTH, (key_id, month))
    return db.execute(MARK_ALERTED, (kind, key_id, month, kind)).rowcount == 1


def enter(db: sqlite3.Connection, key_id: str, jobs: int, ceiling: int) -> bool:
    db.execute(NEW_FLIGHT, (key_id,))
    return db.execute(ENTER, (jobs, key_id, jobs, ceiling)).rowcount == 1


def apply_key_deltas(db: sqlite3.Connection, deltas: KeyDeltas) -> None:
    """Move one key's counters as a change (or a refund) says."""
    key_id = deltas.key_id
    for month, tokens in deltas.months.items():
        db.execute(NEW_MONTH, (key_id, month))
        db.execute(MOVE_MONTH, (0, tokens, key_id, month))
    if deltas.in_flight:
        db.execute(NEW_FLIGHT, (key_id,))
        db.execute(MOVE_FLIGHT, (deltas.in_flight, key_id))
    for minute, tokens in deltas.minutes.items():
        db.execute(ADD_MINUTE, (key_id, minute, tokens))
        oldest = minute_of(datetime.fromisoformat(minute) - MINUTES_KEPT)
        db.execute(PRUNE_MINUTES, (key_id, oldest))


def key_month_of(row: tuple[int, int, str] | None) -> KeyMonth:
    if row is None:
        return KeyMonth()
    requests, tokens, alerted = row
    return KeyMonth(requests, tokens, frozenset(k for k in alerted.split(",") if k))
