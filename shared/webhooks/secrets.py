"""Webhook signing secrets: one per tenant, derived from a single master secret.

During a rotation the master it replaced keeps signing too, until a set moment: each delivery then
carries two signatures (Standard Webhooks allows several), so receivers still on the old secret
and receivers already on the new one both accept it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shared.config import Settings
from shared.models import utcnow

SECRET_PREFIX = "whsec_"


def tenant_secret(master: str, tenant: str) -> str:
    """The tenant's Standard Webhooks secret: `whsec_` + base64(HMAC-SHA256(master, tenant))."""
    digest = hmac.new(master.encode(), tenant.encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class TenantSecrets:
    """A tenant's `whsec_` secret and, during a rotation, the one it replaced and until when
    that one still signs."""

    secret: str
    previous_secret: str | None = None
    previous_secret_expires_at: datetime | None = None

    @property
    def signing(self) -> tuple[str, ...]:
        """Every secret a delivery is signed with now, the current one first."""
        return tuple(s for s in (self.secret, self.previous_secret) if s is not None)


@dataclass(frozen=True)
class MasterSecrets:
    """The master secret, and during a rotation the previous master until `previous_expires_at`."""

    current: str
    previous: str | None = None
    previous_expires_at: datetime | None = None

    def for_tenant(self, tenant: str, now: datetime) -> TenantSecrets:
        secret = tenant_secret(self.current, tenant)
        expires = self.previous_expires_at
        if self.previous is None or expires is None or now >= expires:
            return TenantSecrets(secret)
        return TenantSecrets(secret, tenant_secret(self.previous, tenant), expires)


def load_or_create_master(path: Path, what: str = "webhook master secret") -> str:
    """Read the per-install master secret from `path`, creating it (mode 0600) on first use.

    Used when WEBHOOK_SIGNING_SECRET is unset (embedded mode), and for KEY_HASH_SECRET likewise
    (`what` names it in errors). Safe when several processes start at once: the file appears
    atomically with its content, and the first writer wins.
    """
    existing = _read(path, what)
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
    created = _read(path, what)
    if created is None:
        raise RuntimeError(f"could not create the {what} at {path}")
    return created


def _read(path: Path, what: str) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    if not value:
        raise ValueError(f"the {what} file {path} is empty")
    return value


def masters_from(settings: Settings) -> MasterSecrets:
    """WEBHOOK_SIGNING_SECRET (or, embedded, a per-install secret kept beside the SQLite
    database) and, during a rotation, WEBHOOK_SIGNING_SECRET_PREVIOUS until it expires."""
    s = settings
    if s.webhook_signing_secret:
        current = s.webhook_signing_secret.get_secret_value()
    elif s.on_lambda:
        raise ValueError("WEBHOOK_SIGNING_SECRET must be set on Lambda")
    else:
        current = load_or_create_master(Path(s.sqlite_path).parent / "webhook-master-secret")
    previous = s.webhook_signing_secret_previous
    return MasterSecrets(
        current,
        previous.get_secret_value() if previous else None,
        s.webhook_signing_secret_previous_expires_at,
    )


@dataclass(frozen=True)
class WebhookSecrets:
    """Each tenant's `whsec_` signing secrets, now."""

    masters: MasterSecrets

    def for_tenant(self, tenant: str) -> TenantSecrets:
        """The tenant's secret and, during a rotation, the previous one and its expiry."""
        return self.masters.for_tenant(tenant, utcnow())

    def secret(self, tenant: str) -> str:
        return self.for_tenant(tenant).secret

    def signing(self, tenant: str) -> tuple[str, ...]:
        return self.for_tenant(tenant).signing
