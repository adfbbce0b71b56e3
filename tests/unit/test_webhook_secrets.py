from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from shared.webhooks import load_or_create_master, signed_headers, tenant_secret
from shared.webhooks.secrets import MasterSecrets, TenantSecrets


def test_tenant_secrets_are_stable_distinct_whsec_keys() -> None:
    first = tenant_secret("master", "tenant1")
    assert first == tenant_secret("master", "tenant1")
    assert first != tenant_secret("master", "tenant2") != tenant_secret("other", "tenant1")
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32


def test_a_tenant_secret_verifies_with_standardwebhooks() -> None:
    secret, body = tenant_secret("master", "tenant1"), '{"type":"job.succeeded"}'
    headers = signed_headers(secret, "msg_1", body, datetime.now(UTC))
    assert Webhook(secret).verify(body, headers) == {"type": "job.succeeded"}


def test_master_secret_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "data" / "webhook-secret"
    created = load_or_create_master(path)
    assert len(created) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_master(path) == created
    assert [p.name for p in path.parent.iterdir()] == ["webhook-secret"]


OLD, NEW = "old-master", "new-master"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_during_a_rotation_one_delivery_verifies_with_the_old_and_the_new_secret() -> None:
    masters = MasterSecrets(NEW, previous=OLD, previous_expires_at=NOW + timedelta(days=7))
    secrets = masters.for_tenant("tenant1", NOW)
    old, new = tenant_secret(OLD, "tenant1"), tenant_secret(NEW, "tenant1")
    assert secrets == TenantSecrets(new, old, NOW + timedelta(days=7))
    assert secrets.signing == (new, old)

    body = '{"type":"job.succeeded"}'
    headers = signed_headers(secrets.signing, "msg_1", body, datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for receiver_secret in (old, new):
        assert Webhook(receiver_secret).verify(body, headers) == {"type": "job.succeeded"}
    with pytest.raises(WebhookVerificationError):
        Webhook(tenant_secret(NEW, "tenant2")).verify(body, headers)


def test_after_the_rotation_window_only_the_new_secret_signs() -> None:
    masters = MasterSecrets(NEW, previous=OLD, previous_expires_at=NOW)
    assert masters.for_tenant("tenant1", NOW - timedelta(seconds=1)).previous_secret is not None
    after = masters.for_tenant("tenant1", NOW)
    assert after == TenantSecrets(tenant_secret(NEW, "tenant1"))
    assert after.signing == (tenant_secret(NEW, "tenant1"),)
    assert MasterSecrets(NEW).for_tenant("tenant1", NOW).signing == after.signing


def test_a_single_secret_string_is_one_signature() -> None:
    headers = signed_headers(tenant_secret(NEW, "t"), "msg_1", "{}", datetime.now(UTC))
    assert headers["webhook-signature"].count("v1,") == 1
    with pytest.raises(ValueError, match="at least one"):
        signed_headers([], "msg_1", "{}", datetime.now(UTC))
