"""KeyHasher: what a run-time API key's secret is stored as, HMAC-SHA256 under a server secret.

The server secret is KEY_HASH_SECRET; unset, it is derived from WEBHOOK_SIGNING_SECRET under a
label of its own (so neither value can stand in for the other); with neither (embedded mode), a
random one is made once and kept beside the SQLite file (mode 0600), so keys survive restarts.
On Lambda one of the two settings is required: a container's disk is its own.

A keyed hash rather than a plain one: a copy of the store (a backup, a DynamoDB export) is not
enough to test guesses offline; a slow password hash is not needed, because the secrets are 256
random bits, not passwords, and the look-up must be one hash per request.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from shared.config import Settings
from shared.webhooks.secrets import load_or_create_master

DERIVATION_LABEL = b"chatjobs/api-key-hash/v1"
SECRET_FILE = "key-hash-secret"


class KeyHasher:
    def __init__(self, server_secret: bytes) -> None:
        if len(server_secret) < 16:
            raise ValueError("the key hash secret must be at least 16 bytes")
        self._secret = server_secret

    def hash(self, key_secret: str) -> str:
        """Hex HMAC-SHA256(server secret, key secret)."""
        return hmac.new(self._secret, key_secret.encode(), hashlib.sha256).hexdigest()


def derived_secret(webhook_master: str) -> bytes:
    return hmac.new(webhook_master.encode(), DERIVATION_LABEL, hashlib.sha256).digest()


def hasher_from(settings: Settings) -> KeyHasher:
    """KEY_HASH_SECRET, else derived from WEBHOOK_SIGNING_SECRET, else (not on Lambda) the
    per-install secret beside the SQLite file."""
    if settings.key_hash_secret is not None:
        return KeyHasher(settings.key_hash_secret.get_secret_value().encode())
    if settings.webhook_signing_secret is not None:
        return KeyHasher(derived_secret(settings.webhook_signing_secret.get_secret_value()))
    if settings.on_lambda:
        raise ValueError("KEY_HASH_SECRET (or WEBHOOK_SIGNING_SECRET) must be set on Lambda")
    path = Path(settings.sqlite_path).parent / SECRET_FILE
    return KeyHasher(load_or_create_master(path, "API key hash secret").encode())
