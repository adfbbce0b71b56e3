from __future__ import annotations

import base64
import stat
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks import Webhook

from shared.webhooks import load_or_create_master, signed_headers, tenant_secret


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
