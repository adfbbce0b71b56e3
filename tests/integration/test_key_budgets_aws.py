"""A run-time key's budgets on the AWS layout (moto's DynamoDB and SQS, the SQS worker, the stub
LLM): two API services on one table take exactly a budget's worth of 200 concurrent submits,
tokens settle to what the stub reported, and the SQS worker's job ends free the key's slots."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shared.errors import BudgetExceeded
from shared.factory import ServiceFactory
from shared.key_usage import month_of
from shared.keys import Caller, KeyLimits
from shared.models import JobCreate, JobStatus, utcnow
from shared.services import Services
from tests.integration.test_openai_files import SqsWorker, aws_settings
from tests.stubs.fixtures import LLMStub

pytestmark = pytest.mark.integration

SUBMITS = 200
BUDGET = 50


def body(n: int, max_tokens: int | None = None) -> JobCreate:
    prompt = f"budget question {n:03d}"  # the same number of words (stub tokens) every time
    return JobCreate.model_validate(
        {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    )


async def burst(apis: list[Services], caller: Caller, max_tokens: int | None) -> list[Any]:
    """SUBMITS submits at once, spread over the API services; each a job or BudgetExceeded."""

    async def one(n: int) -> Any:
        try:
            return await apis[n % len(apis)].chat.submit("t1", body(n, max_tokens), caller=caller)
        except BudgetExceeded as exc:
            return exc

    return await asyncio.gather(*(one(n) for n in range(SUBMITS)))


async def ended(api: Services, job_ids: list[str], timeout_s: float = 90) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = [await api.store.get_job(job_id) for job_id in job_ids]
        if all(job is not None and job.status.is_terminal for job in jobs):
            return jobs
        assert time.monotonic() < deadline, "the SQS worker did not finish the jobs"
        await asyncio.sleep(0.2)


def test_budgets_hold_exactly_on_the_aws_layout(llm_stub: LLMStub, moto_endpoint: str) -> None:
    settings = aws_settings(llm_stub, moto_endpoint)
    with SqsWorker(settings):
        asyncio.run(_budgets(settings))


async def _budgets(settings: Any) -> None:
    apis = [await ServiceFactory(settings).start(consume=False) for _ in range(2)]
    try:
        store, month = apis[0].store, month_of(utcnow())

        # what one request costs, as the stub reports it
        probe = await apis[0].chat.submit("t1", body(999), caller=Caller("t1"))
        (answered,) = await ended(apis[0], [probe.id])
        assert answered.result is not None
        tokens = answered.result.usage.input_tokens + answered.result.usage.output_tokens

        requests_key = Caller("t1", "key_requests", KeyLimits(monthly_requests=BUDGET))
        outcomes = await burst(apis, requests_key, None)
        refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
        assert (SUBMITS - len(refused), len(refused)) == (BUDGET, SUBMITS - BUDGET)
        assert (await store.key_month("key_requests", month)).requests == BUDGET

        limits = KeyLimits(monthly_tokens=BUDGET * tokens, max_in_flight=SUBMITS)
        tokens_key = Caller("t1", "key_tokens", limits)
        outcomes = await burst(apis, tokens_key, tokens)
        accepted = [o for o in outcomes if not isinstance(o, BudgetExceeded)]
        assert len(accepted) == BUDGET
        assert await store.in_flight("key_tokens") == BUDGET

        jobs = await ended(apis[1], [job.id for job in accepted])

        assert {job.status for job in jobs} == {JobStatus.succeeded}
        used = sum(j.result.usage.input_tokens + j.result.usage.output_tokens for j in jobs)
        assert used == BUDGET * tokens
        assert (await store.key_month("key_tokens", month)).tokens == BUDGET * tokens
        assert await store.in_flight("key_tokens") == 0  # the worker's ends freed every slot
        with pytest.raises(BudgetExceeded):
            await apis[0].chat.submit("t1", body(1000, tokens), caller=tokens_key)
    finally:
        for api in apis:
            await api.close()
