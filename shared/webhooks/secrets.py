"""Webhook signing secrets: one per tenant, derived from a single master secret."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_PREFIX = "whsec_"


def tenant_secret(master: str, tenant: str) -> str:
    """The tenant's Standard Webhooks secret: `whsec_` + base64(HMAC-SHA256(master, tenant))."""
    digest = hmac.new(master.encode(), tenant.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode("ascii")


def load_or_create_master(path: Path) -> str:
    """Read the per-install master secret from `path`, creating it (mode 0600) on first use.

    Used when WEBHOOK_SIGNING_SECRET is unset (embedded mode). Safe when several processes start
    at once: the file appears atomically with its content, and the first writer wins.
    """
    existing = _read(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        with contextlib.suppress(FileExistsError):
            os.link(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    created = _read(path)
    if created is None:
        raise RuntimeError(f"could not create the webhook master secret at {path}")
    return created


def _read(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not value:
        raise ValueError(f"the webhook master secret file {path} is empty")
    return value
