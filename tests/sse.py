"""A small server-sent-events reader over httpx, for tests of /v1/jobs/{id}/events: the events
a connection brings, each with its id, name and JSON data, and the connection dropped on demand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Event:
    id: str
    event: str
    data: dict[str, Any]


def parse(lines: Iterator[str]) -> Iterator[Event]:
    """Events as the SSE format frames them (comments and `retry:` ignored)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                yield Event(fields.get("id", ""), fields.get("event", "message"), _json(fields))
            fields = {}
            continue
        name, _, value = line.partition(":")
        if name:
            fields[name] = value.removeprefix(" ")


def _json(fields: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fields["data"])
    return data


def read_events(
    http: httpx.Client, url: str, *, last_event_id: str | None = None, keep: int | None = None
) -> list[Event]:
    """The events of one connection; with `keep`, the connection is dropped after that many."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in parse(response.iter_lines()):
            events.append(event)
            if keep is not None and len(events) >= keep:
                break
    return events


def id_order(event_id: str) -> tuple[int, ...]:
    """Event ids compare as numbers: `12` (in process) or `1767607800123-4` (Redis)."""
    return tuple(int(part) for part in event_id.split("-"))
