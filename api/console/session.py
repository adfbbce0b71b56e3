"""The console's session: a browser signs in with an admin key and gets a signed cookie
(itsdangerous, `HttpOnly`, `SameSite=Strict`, `Secure` over https) that names which admin key it
was (a hash, never the key) and carries the session's CSRF token. Changing ADMIN_API_KEYS ends the
sessions of the keys gone. Every state-changing request must send that token back (a form field
or the `X-CSRF-Token` header): a missing or forged one answers 403."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from shared.config import Settings

COOKIE = "chatjobs_console"
COOKIE_PATH = "/console"
SALT = "chatjobs-console-session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class ConsoleSession:
    key_hash: str
    csrf: str


class SignedOut(Exception):
    """No valid session: pages redirect to the sign-in, fragments answer 401."""


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token: 403."""


def key_hash(key: str) -> str:
    return hashlib.sha256(f"console:{key}".encode()).hexdigest()[:32]


def _secret(settings: Settings) -> bytes:
    if settings.console_session_secret is not None:
        return settings.console_session_secret.get_secret_value().encode()
    keys = ",".join(sorted(k.get_secret_value() for k in settings.admin_api_keys))
    return hmac.new(SALT.encode(), keys.encode(), hashlib.sha256).digest()


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(settings), salt=SALT)


def start_session(request: Request, response: Response, admin_key: str) -> ConsoleSession:
    settings: Settings = request.app.state.settings
    session = ConsoleSession(key_hash(admin_key), secrets.token_urlsafe(32))
    value = _serializer(settings).dumps({"k": session.key_hash, "c": session.csrf})
    response.set_cookie(
        COOKIE,
        value,
        max_age=settings.console_session_ttl_s,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return session


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


def read_session(request: Request) -> ConsoleSession:
    """The signed-in session, or SignedOut (no cookie, a bad signature, expired, or a key that
    ADMIN_API_KEYS no longer holds)."""
    settings: Settings = request.app.state.settings
    raw = request.cookies.get(COOKIE)
    if not raw or not settings.admin_api_keys:
        raise SignedOut()
    try:
        data = _serializer(settings).loads(raw, max_age=settings.console_session_ttl_s)
    except BadSignature:
        raise SignedOut() from None
    if not isinstance(data, dict) or not isinstance(data.get("c"), str):
        raise SignedOut()
    live = {key_hash(k.get_secret_value()) for k in settings.admin_api_keys}
    if data.get("k") not in live:
        raise SignedOut()
    return ConsoleSession(str(data["k"]), data["c"])


async def current_session(request: Request) -> ConsoleSession:
    return read_session(request)


async def checked_session(request: Request) -> ConsoleSession:
    """The session of a state-changing request whose CSRF token matches it."""
    session = read_session(request)
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else ""
    if not given or not hmac.compare_digest(given.encode(), session.csrf.encode()):
        raise CsrfRefused()
    return session


SessionDep = Annotated[ConsoleSession, Depends(current_session)]
CheckedSessionDep = Annotated[ConsoleSession, Depends(checked_session)]
