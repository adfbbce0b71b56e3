"""A run-time key's budgets and max_in_flight over HTTP, across two real `python -m api` processes
on one SQLite file (each with its own in-process workers), the key made through
`POST /v1/admin/keys`: 200 concurrent `POST /v1/jobs` against a budget of 50 requests take
exactly 50, and the 150 others are 429 `budget_exceeded` naming the budget and its reset with
Retry-After; the same for a token budget, settled to the stub LLM's token counts; and N jobs in
flight refuse the N+1th with `rate_limited` until one ends. The admin API's `usage` of the key
and `chatjobs keys list` show the figures."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests import http_burst
from tests.e2e import procs
from tests.e2e.conftest import TERMINAL, Api, Launcher, chat
from tests.e2e.services import KEYS, service_env
from tests.e2e.test_cli import COMMAND
from tests.http_burst import Answer, check_budget_refusals
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-budgets-admin"
SUBMITS = 200
BUDGET = 50
IN_FLIGHT = 3
EXTRA_TOKENS = 4  # reserved a request beyond what the stub will count
STALL_S = 6.0  # how long the stub holds the in-flight test's first jobs


@dataclass(frozen=True)
class Two:
    a: Api
    b: Api

    def __iter__(self) -> Iterator[Api]:
        return iter((self.a, self.b))


@pytest.fixture(scope="module")
def two(module_launcher: Launcher, llm_stub_server: LLMStub) -> Two:
    """Two API processes on one SQLite file, the stub Gemini behind both."""
    env = service_env(llm_stub_server, ADMIN_API_KEYS=ADMIN_KEY, LLM_TIMEOUT_S="30")
    return Two(module_launcher.api("api-a", **env), module_launcher.api("api-b", **env))


def admin(api: Api, method: str, path: str, **options: Any) -> dict[str, Any]:
    with api.client(ADMIN_KEY) as http:
        response = http.request(method, path, **options)
    assert response.is_success, response.text
    body: dict[str, Any] = response.json()
    return body


def make_key(api: Api, tenant: str, **limits: int) -> dict[str, Any]:
    body = {"tenant": tenant, "name": f"{tenant} budget", "limits": limits}
    return admin(api, "POST", "/v1/admin/keys", json=body)


def question(n: int, **fields: Any) -> dict[str, Any]:
    return chat(f"budget question {n:03d}", **fields)  # the same number of words every time


def burst(two: Two, secret: str, **fields: Any) -> list[Answer]:
    """SUBMITS submits at once with `secret`, alternately to each process."""
    return http_burst.burst(
        [api.url for api in two], secret, SUBMITS, lambda n: question(n, **fields)
    )


def key_jobs(api: Api, secret: str) -> list[dict[str, Any]]:
    with api.client(secret) as http:
        page = http.get("/v1/jobs", params={"limit": 100}).raise_for_status().json()
    assert page["next_cursor"] is None
    jobs: list[dict[str, Any]] = page["data"]
    return jobs


def usage_of(api: Api, key_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = admin(api, "GET", f"/v1/admin/keys/{key_id}")["usage"]
    return shown


def tokens_of(job: dict[str, Any]) -> int:
    usage = job["result"]["usage"]
    return int(usage["input_tokens"] + usage["output_tokens"])


def keys_list(api: Api, tenant: str) -> str:
    env = procs.child_env(CHATJOBS_URL=api.url, CHATJOBS_ADMIN_KEY=ADMIN_KEY, COLUMNS="200")
    listed = subprocess.run(
        [*COMMAND, "keys", "list", "--tenant", tenant],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


def test_a_request_budget_of_50_takes_exactly_50_of_200_across_two_processes(
    two: Two, llm_stub: LLMStub
) -> None:
    made = make_key(two.a, "budget-requests", monthly_requests=BUDGET)
    started = datetime.now(UTC)
    clock = time.monotonic()

    answers = burst(two, made["key"])

    took = time.monotonic() - clock
    statuses = Counter(a.status for a in answers)
    accepted = [a for a in answers if a.accepted]
    refused = [a for a in answers if not a.accepted]
    per_process = Counter(a.api for a in accepted)
    print(f"\n{SUBMITS} submits in {took:.2f} s: {dict(statuses)}; accepted by a/b: "
          f"{per_process[0]}/{per_process[1]}")  # fmt: skip
    assert (len(accepted), len(refused)) == (BUDGET, SUBMITS - BUDGET), dict(statuses)
    check_budget_refusals(refused, f"monthly_requests budget of {BUDGET} requests", started)

    stored = key_jobs(two.b, made["key"])  # what was refused was never stored
    assert sorted(j["id"] for j in stored) == sorted(a.body["id"] for a in accepted)
    for api in two:  # both processes read the same counters
        assert usage_of(api, made["id"])["requests"] == BUDGET
    with two.a.client(made["key"]) as http:
        one_more = http.post("/v1/jobs", json=question(999))
    assert one_more.status_code == 429 and "room for 0 more" in one_more.text
    row = keys_list(two.b, "budget-requests")
    assert made["id"] in row and f"{BUDGET}/{BUDGET}" in row.split(made["id"])[1]


def probe_tokens(two: Two) -> int:
    """What one `question` costs, as the stub counts it (input + output)."""
    with two.a.client(KEYS["t1"]) as http:
        probe = http.post("/v1/jobs", json=question(999)).raise_for_status().json()
        return tokens_of(two.a.wait_terminal([probe["id"]], timeout=30, client=http)[probe["id"]])


def test_a_token_budget_takes_exactly_what_fits_and_settles_to_the_stubs_counts(
    two: Two, llm_stub: LLMStub
) -> None:
    tokens = probe_tokens(two)
    calls_before = llm_stub.stats()["gemini"]
    budget = BUDGET * tokens
    made = make_key(two.a, "budget-tokens", monthly_tokens=budget)
    started = datetime.now(UTC)

    answers = burst(two, made["key"], max_tokens=tokens)  # reserving what each will use

    accepted = [a for a in answers if a.accepted]
    refused = [a for a in answers if not a.accepted]
    assert (len(accepted), len(refused)) == (BUDGET, SUBMITS - BUDGET)
    check_budget_refusals(refused, f"monthly_tokens budget of {budget} tokens", started)
    used = ended_tokens(two, made["key"], accepted)
    assert used == budget  # the stub's own counts: 50 x what the probe used
    assert llm_stub.stats()["gemini"] - calls_before == BUDGET  # refused ones never reached it
    for api in two:
        usage = usage_of(api, made["id"])
        assert (usage["requests"], usage["tokens"]) == (BUDGET, used), usage
    print(f"\ntoken budget {budget} ({tokens} a request): {len(accepted)} of {SUBMITS} "
          f"accepted, {used} tokens used as the stub counted them")  # fmt: skip
    with two.b.client(made["key"]) as http:
        again = http.post("/v1/jobs", json=question(999, max_tokens=1))
    assert again.status_code == 429 and "room for 0 more" in again.text


def test_reservations_above_use_settle_to_the_stubs_counts(two: Two, llm_stub: LLMStub) -> None:
    """Each request reserves more than it will use: jobs that end give the difference back
    (more fit than the reservations alone allow), and the month settles to the stub's counts,
    never past the budget; what is left is exactly what the next request may reserve."""
    tokens = probe_tokens(two)
    reserve = tokens + EXTRA_TOKENS
    budget = BUDGET * reserve
    made = make_key(two.a, "budget-settles", monthly_tokens=budget)

    answers = burst(two, made["key"], max_tokens=reserve)

    accepted = [a for a in answers if a.accepted]
    assert len(accepted) >= BUDGET, Counter(a.status for a in answers)
    used = ended_tokens(two, made["key"], accepted)
    assert used == len(accepted) * tokens <= budget
    usage = usage_of(two.b, made["id"])
    assert (usage["requests"], usage["tokens"]) == (len(accepted), used), usage
    room = budget - used
    with two.a.client(made["key"]) as http:
        over = http.post("/v1/jobs", json=question(998, max_tokens=room + 1))
        assert over.status_code == 429 and f"room for {room} more" in over.text, over.text
        if room:
            assert http.post("/v1/jobs", json=question(997, max_tokens=room)).status_code == 202
    print(f"\ntoken budget {budget} ({reserve} reserved, {tokens} used a request): "
          f"{len(accepted)} of {SUBMITS} accepted, settled to {used}, {room} left")  # fmt: skip


def ended_tokens(two: Two, secret: str, accepted: list[Answer]) -> int:
    """Wait for the accepted jobs to succeed; the tokens the stub said they used."""
    with two.b.client(secret) as http:
        jobs = two.b.wait_terminal([a.body["id"] for a in accepted], timeout=60, client=http)
    assert {job["status"] for job in jobs.values()} == {"succeeded"}
    return sum(tokens_of(job) for job in jobs.values())


def test_max_in_flight_refuses_the_next_job_until_one_ends(two: Two, llm_stub: LLMStub) -> None:
    made = make_key(two.a, "budget-flight", max_in_flight=IN_FLIGHT)
    clients = {api.url: api.client(made["key"]) for api in two}
    try:

        def submit(api: Api, n: int) -> httpx.Response:
            return clients[api.url].post("/v1/jobs", json=question(n))

        llm_stub.set("gemini", "stall", seconds=STALL_S, times=IN_FLIGHT)
        held = [submit((two.a, two.b)[n % 2], n) for n in range(IN_FLIGHT)]
        assert [r.status_code for r in held] == [202] * IN_FLIGHT

        refused = [submit(api, 100 + n) for n, api in enumerate(two)]
        jobs = [two.a.job(r.json()["id"], client=clients[two.a.url]) for r in held]
        assert all(job["status"] not in TERMINAL for job in jobs), "a held job ended too soon"
        for answer in refused:
            error = answer.json()["error"]
            assert (answer.status_code, error["code"]) == (429, "rate_limited"), answer.text
            assert f"max_in_flight of {IN_FLIGHT}" in error["message"]
            assert answer.headers["retry-after"] == "1"
        assert usage_of(two.b, made["id"])["in_flight"] == IN_FLIGHT

        first = held[0].json()["id"]
        ended = two.a.wait_terminal([first], timeout=STALL_S + 30, client=clients[two.a.url])
        assert ended[first]["status"] == "succeeded"
        assert submit(two.b, 200).status_code == 202  # a slot is free again

        ids = [r.json()["id"] for r in held]
        two.a.wait_terminal(ids, timeout=STALL_S + 30, client=clients[two.a.url])
        assert procs.wait_for(lambda: usage_of(two.a, made["id"])["in_flight"] == 0, 30)
    finally:
        for client in clients.values():
            client.close()


def test_usage_by_key_has_a_row_per_key_of_the_tenant(two: Two, llm_stub: LLMStub) -> None:
    """Two keys of one tenant (t2) and its bootstrap key: `/v1/usage?group_by=key` shows a row
    per key id with its own requests and the stub's tokens, the bootstrap key's as `bootstrap`;
    the admin API's `usage` of a key without budgets shows the same; another tenant sees none."""
    keys = {name: make_key(two.a, "t2") for name in ("first", "second")}
    sent = {"first": 3, "second": 2}
    ids: dict[str, list[str]] = {}
    for name, count in sent.items():
        with two.b.client(keys[name]["key"]) as http:
            jobs = [http.post("/v1/jobs", json=chat(f"{name} usage {n}")) for n in range(count)]
        ids[name] = [job.raise_for_status().json()["id"] for job in jobs]
    with two.a.client(KEYS["t2"]) as http:
        ids["bootstrap"] = [http.post("/v1/jobs", json=chat("bootstrap usage")).json()["id"]]
        ended = two.a.wait_terminal([i for found in ids.values() for i in found], 30, http)
    tokens = {name: sum(tokens_of(ended[i]) for i in found) for name, found in ids.items()}

    with two.b.client(keys["second"]["key"]) as http:  # any key of the tenant
        rows = http.get("/v1/usage", params={"group_by": "key"}).raise_for_status().json()
    shown = {
        r["group"]: (r["requests"], r["input_tokens"] + r["output_tokens"]) for r in rows["data"]
    }
    by_id = {keys[name]["id"]: name for name in keys} | {"bootstrap": "bootstrap"}
    assert {by_id[group]: figures for group, figures in shown.items()} == {
        name: (len(found), tokens[name]) for name, found in ids.items()
    }
    for name in keys:
        usage = usage_of(two.a, keys[name]["id"])
        assert (usage["requests"], usage["tokens"], usage["in_flight"]) == (
            sent[name],
            tokens[name],
            None,
        )
    with two.a.client(KEYS["t1"]) as http:
        other = http.get("/v1/usage", params={"group_by": "key"}).raise_for_status().json()
    assert not {r["group"] for r in other["data"]} & set(shown) - {"bootstrap"}
