"""The field changes a JobOutcome stands for: one definition for every store adapter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.ports import JobOutcome


def outcome_changes(outcome: JobOutcome, now: datetime) -> dict[str, Any]:
    """Job fields to set when a job ends as `outcome` says (status and updated_at apart)."""
    changes: dict[str, Any] = {
        "error": outcome.error,
        "completed_at": now,
        "lease_until": None,
        "not_before": None,
    }
    if outcome.result is not None:
        changes["result"] = outcome.result
    if outcome.webhook is not None:
        changes["webhook"] = outcome.webhook
    if outcome.release_idempotency_key:
        changes["idempotency_key"] = None
    return changes
