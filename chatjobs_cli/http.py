"""The HTTP side of `chatjobs`: one client per command, answers checked into exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import typer
from rich.markup import escape

from chatjobs_cli.exits import EXIT_HTTP, CliError, err

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
BATCH_DONE = frozenset({"completed", "cancelled"})
MAX_WAIT_S = 30  # the API's longest long-poll


@dataclass(frozen=True)
class Target:
    """Where the commands send their requests (the global --base-url and --api-key)."""

    base_url: str
    api_key: str | None

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)


def checked(response: httpx.Response) -> Any:
    """The answer's JSON; a 4xx/5xx or a non-JSON answer raises CliError(EXIT_HTTP)."""
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise CliError(EXIT_HTTP, f"HTTP {response.status_code}: {message}")
    try:
        return response.json()
    except ValueError:
        raise CliError(EXIT_HTTP, f"HTTP {response.status_code}: the answer is not JSON") from None


def wait_job(http: httpx.Client, job_id: str, timeout_s: float) -> dict[str, Any]:
    """Long-poll the job until it is terminal or `timeout_s` passes; return its last state."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        wait = round(min(max(left, 0), MAX_WAIT_S), 1)
        job: dict[str, Any] = checked(http.get(f"/v1/jobs/{job_id}", params={"wait": wait}))
        if job["status"] in TERMINAL or left <= 0:
            return job


def pages(
    http: httpx.Client, params: dict[str, Any], follow: bool, path: str = "/v1/jobs"
) -> Iterator[tuple[list[dict[str, Any]], str | None]]:
    """Pages of jobs (or, with `path`, another listing) with the cursor of the page after each;
    `follow` goes on to the last one."""
    while True:
        page = checked(http.get(path, params=params))
        cursor: str | None = page.get("next_cursor")
        yield page["data"], cursor
        if not follow or not cursor:
            return
        params = {**params, "cursor": cursor}


def print_listing(
    ctx: typer.Context,
    params: dict[str, Any],
    *,
    path: str,
    header: str,
    row: Callable[[dict[str, Any]], str],
    every: bool,
    as_json: bool,
) -> None:
    """Print a listing's pages (a header before the first row, or a JSON object a line), then,
    when a page is left, the cursor that fetches it: on one line of stderr, to copy."""
    more: str | None = None
    with target(ctx).client() as http:
        for number, (page, next_page) in enumerate(pages(http, params, follow=every, path=path)):
            more = next_page
            if number == 0 and not as_json:
                print(header)
            for item in page:
                print(json.dumps(item) if as_json else row(item))
    if more:
        noun = path.rsplit("/", 1)[-1]
        err.print(f"more {noun}: --cursor {escape(more)} (or --all)")


def target(ctx: typer.Context) -> Target:
    """The Target that the global options put on the context."""
    found: Target = ctx.obj
    return found
