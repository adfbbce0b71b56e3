"""`chatjobs keys create|list|revoke|rotate`: run-time API keys through the admin API, with an
admin key (--admin-key / CHATJOBS_ADMIN_KEY; else the global --api-key). A new secret goes to
stdout alone (`KEY=$(chatjobs keys create …)`), what it is to stderr."""

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from chatjobs_cli.exits import EXIT_OK, err
from chatjobs_cli.http import Target, checked, print_listing, target


class Priority(StrEnum):
    high = "high"
    normal = "normal"
    low = "low"


def admin_options(
    ctx: typer.Context,
    admin_key: Annotated[
        str | None,
        typer.Option(
            envvar="CHATJOBS_ADMIN_KEY",
            show_default=False,
            help="An ADMIN_API_KEYS key (env CHATJOBS_ADMIN_KEY); default: --api-key.",
        ),
    ] = None,
) -> None:
    """Make, list, revoke and rotate API keys (needs an admin key)."""
    given = target(ctx)
    ctx.obj = Target(given.base_url, admin_key or given.api_key)


def create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="The tenant the key acts for.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
    expires_at: Annotated[
        str | None, typer.Option(help="When it stops working (ISO 8601 with a time zone).")
    ] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(min=1, help="Jobs queued or running at once.")
    ] = None,
    monthly_requests: Annotated[
        int | None, typer.Option(min=1, help="Requests per calendar month (UTC).")
    ] = None,
    monthly_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens per calendar month (UTC).")
    ] = None,
    priority: Annotated[
        Priority | None, typer.Option(help="Priority of its jobs that name none.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole key, secret included, as JSON.")
    ] = False,
) -> int:
    """Make an API key; print its secret (shown this once)."""
    limits = {
        "rpm": rpm,
        "tpm": tpm,
        "max_in_flight": max_in_flight,
        "monthly_requests": monthly_requests,
        "monthly_tokens": monthly_tokens,
    }
    body: dict[str, Any] = {"tenant": tenant, "name": name}
    if expires_at:
        body["expires_at"] = expires_at
    if any(v is not None for v in limits.values()):
        body["limits"] = {k: v for k, v in limits.items() if v is not None}
    if priority:
        body["priority"] = priority.value
    with target(ctx).client() as http:
        made = checked(http.post("/v1/admin/keys", json=body))
    return _show_secret(made, as_json, f"key {made['id']} for tenant {made['tenant']}")


def list_keys(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Keys per page.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Start at this page (a next_cursor printed before).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Follow the cursors and list every page.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One key per line as JSON.")] = False,
) -> int:
    """List API keys, newest first (never their secrets), with this month's requests and
    tokens and the jobs in flight of each (used/limit where the key has that limit)."""
    params: dict[str, Any] = {"limit": limit}
    params |= {k: v for k, v in {"tenant": tenant, "cursor": cursor}.items() if v}
    print_listing(ctx, params, path="/v1/admin/keys", header=HEADER, row=key_row, every=every,
                  as_json=as_json)  # fmt: skip
    return EXIT_OK


HEADER = (
    f"{'ID':<28}  {'PREFIX':<11}  {'TENANT':<16}  {'STATUS':<7}  {'REQUESTS':>13}  "
    f"{'TOKENS':>17}  {'IN FLIGHT':>9}  {'LAST USED':<32}  NAME"
)


def key_row(key: dict[str, Any]) -> str:
    """A key and this month's use of its limits (`used/limit` where it has one)."""
    used = key.get("last_used_at") or "never"
    usage, limits = key.get("usage") or {}, key.get("limits") or {}
    requests = _used(usage.get("requests"), limits.get("monthly_requests"))
    tokens = _used(usage.get("tokens"), limits.get("monthly_tokens"))
    flight = _used(usage.get("in_flight"), limits.get("max_in_flight"))
    return (
        f"{key['id']:<28}  {key['prefix']:<11}  {key['tenant']:<16}  {key['status']:<7}  "
        f"{requests:>13}  {tokens:>17}  {flight:>9}  {used:<32}  {key['name']}"
    )


def _used(figure: int | None, limit: int | None) -> str:
    if figure is None:
        return "-"
    return f"{figure}/{limit}" if limit is not None else str(figure)


def revoke(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
) -> int:
    """Revoke a key: refused everywhere within KEY_CACHE_TTL_S."""
    with target(ctx).client() as http:
        key = checked(http.post(f"/v1/admin/keys/{key_id}/revoke"))
    print(json.dumps(key, indent=2))
    return EXIT_OK


def rotate(
    ctx: typer.Context,
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    grace: Annotated[
        int,
        typer.Option(min=0, help="Seconds the old secret keeps working (0: it stops now)."),
    ] = 3600,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole key, new secret included, as JSON.")
    ] = False,
) -> int:
    """Give a key a new secret (printed, shown this once); the old one works --grace more."""
    with target(ctx).client() as http:
        key = checked(http.post(f"/v1/admin/keys/{key_id}/rotate", json={"grace_period_s": grace}))
    until = key.get("previous_secret_valid_until")
    old = f"the old secret works until {until}" if until else "the old secret no longer works"
    return _show_secret(key, as_json, f"key {key['id']} rotated: {old}")


def _show_secret(key: dict[str, Any], as_json: bool, what: str) -> int:
    if as_json:
        print(json.dumps(key, indent=2))
    else:
        err.print(f"{escape(what)}; its secret, shown this once:")
        print(key["key"])
    return EXIT_OK
