"""Many `POST /v1/jobs` at once over real HTTP, spread over several API instances (processes or
served apps): what the budget tests fire at a key, and what each answer was."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from shared.key_usage import next_month

ACCEPTED = (200, 202)


@dataclass(frozen=True)
class Answer:
    api: int  # the index of the instance that answered
    status: int
    headers: httpx.Headers
    body: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.status in ACCEPTED


def burst(
    urls: Sequence[str], secret: str, submits: int, body: Callable[[int], dict[str, Any]]
) -> list[Answer]:
    """`submits` submits of `body(n)` at once with `secret`, to each of `urls` in turn. Each
    instance sees the key once first, so that none starts the burst with a cold key cache."""

    async def all_at_once() -> list[Answer]:
        clients = [
            httpx.AsyncClient(
                base_url=url,
                headers={"Authorization": f"Bearer {secret}"},
                timeout=60,
                limits=httpx.Limits(max_connections=submits),
                trust_env=False,
            )
            for url in urls
        ]

        async def one(n: int) -> Answer:
            at = n % len(clients)
            response = await clients[at].post("/v1/jobs", json=body(n))
            return Answer(at, response.status_code, response.headers, response.json())

        try:
            for client in clients:
                (await client.get("/v1/jobs", params={"limit": 1})).raise_for_status()
            return await asyncio.gather(*(one(n) for n in range(submits)))
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(all_at_once())


def check_budget_refusals(refused: list[Answer], budget: str, started: datetime) -> None:
    """Each is 429 `budget_exceeded`, its message naming `budget` (e.g. "monthly_requests budget
    of 50 requests") and the next UTC month's first instant, with Retry-After up to then."""
    resets = next_month(started)
    when = resets.isoformat().replace("+00:00", "Z")
    until = (resets - started).total_seconds()
    for answer in refused:
        error = answer.body["error"]
        assert (answer.status, error["code"]) == (429, "budget_exceeded"), answer
        assert budget in error["message"] and f"resets at {when}" in error["message"], error
        assert 0 < int(answer.headers["retry-after"]) <= until + 1, answer.headers
