"""SecretsManagerSource: settings from one JSON secret in AWS Secrets Manager (AWS_SECRET_ID).

The secret is read once per process (a Lambda container's cold start) and kept for the process's
life; a rotated value reaches containers started after the rotation. The synchronous botocore
client is used because settings are built before any event loop runs. Only the keys in
`SECRET_KEYS` are taken from the secret; botocore is imported only when a secret is read.

A settings source, not an adapter: shared/config.py builds on it, and nothing here imports
from shared/adapters/.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any, Final

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource, SettingsError

log = logging.getLogger(__name__)

SECRET_KEYS: Final = (
    "API_KEYS",
    "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
    "WEBHOOK_SIGNING_SECRET",
    # a webhook signing-secret rotation: the old master and when it stops signing, put together
    "WEBHOOK_SIGNING_SECRET_PREVIOUS",
    "WEBHOOK_SIGNING_SECRET_PREVIOUS_EXPIRES_AT",
    # run-time API keys: the admin API's keys, and the server secret their hashes are keyed with
    "ADMIN_API_KEYS",
    "KEY_HASH_SECRET",
)

CacheKey = tuple[str, str | None, str | None]  # secret id, endpoint, region
_secrets: dict[CacheKey, dict[str, str]] = {}
_reading = threading.Lock()


class SecretsManagerSource(PydanticBaseSettingsSource):
    """Supplies the secret's values when AWS_SECRET_ID is set, by an init kwarg or in the
    environment (the sources ahead of this one); AWS_ENDPOINT_URL and AWS_REGION likewise."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole secret at once

    def __call__(self) -> dict[str, Any]:
        secret_id = self._setting("aws_secret_id")
        if not secret_id:
            return {}
        values = read_secret(
            secret_id,
            endpoint_url=self._setting("aws_endpoint_url"),
            region=self._setting("aws_region") or os.environ.get("AWS_REGION"),
        )
        return {key.lower(): value for key, value in values.items()}

    def _setting(self, field_name: str) -> str | None:
        value = self.current_state.get(field_name)
        return str(value) if value else None


def read_secret(
    secret_id: str, *, endpoint_url: str | None = None, region: str | None = None
) -> dict[str, str]:
    """The secret's SECRET_KEYS values, fetched on the process's first call and kept."""
    key = (secret_id, endpoint_url, region)
    with _reading:
        if key not in _secrets:
            _secrets[key] = _fetch(secret_id, endpoint_url, region)
        return _secrets[key]


def forget_secrets() -> None:
    """Read every secret again on next use (tests)."""
    with _reading:
        _secrets.clear()


def _fetch(secret_id: str, endpoint_url: str | None, region: str | None) -> dict[str, str]:
    import botocore.session
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    config = Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard"})
    client: Any = botocore.session.get_session().create_client(
        "secretsmanager", endpoint_url=endpoint_url, region_name=region, config=config
    )
    try:
        secret_string = client.get_secret_value(SecretId=secret_id).get("SecretString")
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise _error(secret_id, f"{error.get('Code')}: {error.get('Message')}") from exc
    except BotoCoreError as exc:
        raise _error(secret_id, str(exc)) from exc
    finally:
        client.close()
    return _parse(secret_id, secret_string)


def _parse(secret_id: str, secret_string: str | None) -> dict[str, str]:
    try:
        data = json.loads(secret_string or "")
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise _error(secret_id, "the secret is not a JSON object")
    ignored = sorted(set(data) - set(SECRET_KEYS))
    if ignored:
        log.warning(
            "ignoring keys of secret %s that are not settings secrets: %s", secret_id, ignored
        )
    return {k: str(data[k]) for k in SECRET_KEYS if data.get(k) is not None}


def _error(secret_id: str, reason: str) -> SettingsError:
    return SettingsError(f"cannot read AWS_SECRET_ID={secret_id!r} from Secrets Manager: {reason}")
