"""NDJSON batches are validated a line at a time and read again lazily, line by line, exactly as
the whole-body parse read them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from api.batch_body import NdjsonRequests, parse_batch
from api.errors import ApiError
from shared.models import BatchItem


def line(custom_id: str, **extra: Any) -> bytes:
    body = {"custom_id": custom_id, "messages": [{"role": "user", "content": custom_id}], **extra}
    return json.dumps(body).encode()


def whole_body_parse(body: bytes) -> list[BatchItem]:
    """What the batch parser did before it streamed: split the body, parse every line."""
    return [BatchItem.model_validate_json(raw) for raw in body.splitlines() if raw.strip()]


def test_lazy_requests_are_the_lines_the_whole_body_parse_read() -> None:
    body = b"\n".join(
        [line("a"), b"", line("b", temperature=0.5) + b"\r", line("c") + b"\r" + line("d"), b"  "]
    )
    requests = NdjsonRequests.read(io.BytesIO(body), max_requests=10)
    assert len(requests) == 4
    assert list(requests) == whole_body_parse(body)
    assert requests[2].custom_id == "c" and requests[-1].custom_id == "d"
    assert [r.custom_id for r in requests[1:3]] == ["b", "c"]


def test_a_leading_byte_order_mark_is_still_accepted() -> None:
    requests = NdjsonRequests.read(io.BytesIO(b"\xef\xbb\xbf" + line("a")), max_requests=10)
    assert requests[0].custom_id == "a"


def test_a_bad_line_deep_in_a_big_body_is_named() -> None:
    lines = [line(f"c{n}") for n in range(5_000)]
    lines[3_999] = b'{"custom_id": "bad", "messages": []}'
    with pytest.raises(ApiError) as refused:
        parse_batch(
            io.BytesIO(b"\n".join(lines)),
            "application/x-ndjson",
            max_requests=10_000,
            webhook_url=None,
        )
    assert refused.value.status_code == 422
    assert "line 4000" in str(refused.value.detail) and "'bad'" in str(refused.value.detail)
    assert (
        refused.value.fields is not None and refused.value.fields[0].field == "line 4000.messages"
    )


def test_the_requests_are_not_held_parsed() -> None:
    requests = NdjsonRequests.read(io.BytesIO(b"\n".join(line(f"c{n}") for n in range(100))), 200)
    assert requests[0] is not requests[0]  # parsed afresh each time it is read
