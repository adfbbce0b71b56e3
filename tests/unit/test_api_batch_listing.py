"""GET /v1/batches: the caller's batches, newest first, a page at a time."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.conftest import T1, T2, Api, chat


async def submit_batch(api: Api, n: int, headers: dict[str, str] = T1) -> dict[str, Any]:
    body = {"requests": [{"custom_id": f"c{i}", **chat(f"p{n} {i}")} for i in range(2)]}
    response = await api.client.post("/v1/batches", json=body, headers=headers)
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    return batch


async def test_batches_list_newest_first_with_a_cursor(api: Api) -> None:
    made = [await submit_batch(api, n) for n in range(5)]
    await submit_batch(api, 9, headers=T2)

    first = await api.client.get("/v1/batches", params={"limit": 2}, headers=T1)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [b["id"] for b in page["data"]] == [made[4]["id"], made[3]["id"]]
    assert page["data"][0] == made[4]  # the same public batch as GET /v1/batches/{id}
    seen = [b["id"] for b in page["data"]]
    cursor = page["next_cursor"]
    while cursor:
        more = await api.client.get(
            "/v1/batches", params={"limit": 2, "cursor": cursor}, headers=T1
        )
        seen += [b["id"] for b in more.json()["data"]]
        cursor = more.json()["next_cursor"]
    assert seen == [b["id"] for b in made[::-1]]


async def test_batches_list_is_per_tenant_and_empty_for_a_new_one(api: Api) -> None:
    await submit_batch(api, 1)
    other = await api.client.get("/v1/batches", headers=T2)
    assert other.status_code == 200 and other.json() == {"data": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit"), ({"limit": 101}, "limit")],
)
async def test_batches_list_refuses_bad_parameters_naming_them(
    api: Api, params: dict[str, Any], field: str
) -> None:
    response = await api.client.get("/v1/batches", params=params, headers=T1)
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]


async def test_batches_list_requires_a_key(api: Api) -> None:
    assert (await api.client.get("/v1/batches")).status_code == 401
