"""Settings read the Secrets Manager secret named by AWS_SECRET_ID, from moto's server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from pydantic import SecretStr
from pydantic_settings import SettingsError

from shared.adapters.aws.clients import AwsClients
from shared.adapters.aws.setup import AwsLayout, create_secret
from shared.config import Settings
from shared.secrets_source import forget_secrets

pytestmark = pytest.mark.integration

SECRET = {
    "API_KEYS": "acme:key-from-secret",
    "GEMINI_API_KEY": "gemini-from-secret",
    "OPENROUTER_API_KEY": "openrouter-from-secret",
    "WEBHOOK_SIGNING_SECRET": "signing-from-secret",
    "ADMIN_API_KEYS": "admin-one-from-secret,admin-two-from-secret",
    "KEY_HASH_SECRET": "key-hash-from-secret-0123456789",
}


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


@pytest.fixture
async def secret_env(
    moto_endpoint: str,
    aws_clients: AwsClients,
    aws_layout: AwsLayout,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    await create_secret(aws_clients, aws_layout.secret_id, SECRET)
    for name in SECRET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SECRET_ID", aws_layout.secret_id)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    return aws_layout.secret_id


@pytest.fixture
def secret_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every GetSecretValue call made by any botocore client created from now on."""
    calls: list[str] = []
    create_client = botocore.session.Session.create_client

    def counting(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = create_client(self, *args, **kwargs)
        client.meta.events.register(
            "before-call.secrets-manager.GetSecretValue",
            lambda **_: calls.append("GetSecretValue"),
        )
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", counting)
    return calls


def settings(**overrides: Any) -> Settings:
    return Settings(_env_file=None, **overrides)


def revealed(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


async def test_settings_take_their_secrets_from_the_secret(secret_env: str) -> None:
    s = settings()
    assert s.tenants_by_key == {"key-from-secret": "acme"}
    assert revealed(s.gemini_api_key) == "gemini-from-secret"
    assert revealed(s.openrouter_api_key) == "openrouter-from-secret"
    assert revealed(s.webhook_signing_secret) == "signing-from-secret"
    admin = [revealed(key) for key in s.admin_api_keys]
    assert admin == ["admin-one-from-secret", "admin-two-from-secret"]
    assert revealed(s.key_hash_secret) == "key-hash-from-secret-0123456789"


async def test_the_environment_and_init_arguments_override_the_secret(
    secret_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-from-env")
    s = settings(openrouter_api_key="openrouter-from-init")
    assert revealed(s.gemini_api_key) == "gemini-from-env"
    assert revealed(s.openrouter_api_key) == "openrouter-from-init"
    assert s.tenants_by_key == {"key-from-secret": "acme"}


async def test_the_secret_overrides_a_dotenv_file(secret_env: str, tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("API_KEYS=dev:from-dotenv\nGEMINI_MODEL=from-dotenv\n")
    s = Settings(_env_file=dotenv)
    assert s.tenants_by_key == {"key-from-secret": "acme"}
    assert s.gemini_model == "from-dotenv"  # not a secret: .env still supplies it


async def test_the_secret_is_named_by_an_init_argument_too(
    secret_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_SECRET_ID")
    assert settings().gemini_api_key is None
    assert revealed(settings(aws_secret_id=secret_env).gemini_api_key) == "gemini-from-secret"


async def test_a_missing_secret_is_a_clear_error(
    secret_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ID", "no/such/secret")
    with pytest.raises(SettingsError, match=r"AWS_SECRET_ID='no/such/secret'.*ResourceNotFound"):
        settings()


async def test_a_secret_that_is_not_a_json_object_is_a_clear_error(
    secret_env: str, aws_clients: AwsClients
) -> None:
    sm = await aws_clients.client("secretsmanager")
    await sm.put_secret_value(SecretId=secret_env, SecretString=json.dumps(["a", "b"]))
    with pytest.raises(SettingsError, match=r"AWS_SECRET_ID=.*not a JSON object"):
        settings()


async def test_fifty_settings_read_the_secret_once(
    secret_env: str, secret_reads: list[str]
) -> None:
    built = [settings() for _ in range(50)]
    assert all(s.tenants_by_key == {"key-from-secret": "acme"} for s in built)
    assert secret_reads == ["GetSecretValue"]


async def test_without_aws_secret_id_nothing_is_read(
    moto_endpoint: str, secret_reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_SECRET_ID", raising=False)
    settings()
    assert secret_reads == []


async def test_a_signing_secret_rotation_comes_from_the_secret(
    secret_env: str, aws_clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    rotation = {
        "WEBHOOK_SIGNING_SECRET_PREVIOUS": "previous-signing-from-secret",
        "WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT": "2026-12-01T00:00:00Z",
    }
    for name in rotation:
        monkeypatch.delenv(name, raising=False)
    sm = await aws_clients.client("secretsmanager")
    await sm.put_secret_value(SecretId=secret_env, SecretString=json.dumps(SECRET | rotation))
    s = settings()
    assert s.webhook_signing_secret_previous is not None
    assert revealed(s.webhook_signing_secret_previous) == "previous-signing-from-secret"
    assert str(s.webhook_signing_secret_previous_expires_at) == "2026-12-01 00:00:00+00:00"
