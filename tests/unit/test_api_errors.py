"""Domain errors reach clients through one table (api/errors.py DOMAIN_ANSWERS)."""

from __future__ import annotations

import pytest

import shared.errors as errors
from api.errors import DOMAIN_ANSWERS, answer_for
from tests.unit.conftest import T1, Api, chat

# Raised and answered inside their routes (with the parameter they concern), or never reach HTTP.
HANDLED_ELSEWHERE = {
    errors.ChatJobsError,
    errors.LLMError,
    errors.TransientLLMError,
    errors.PermanentLLMError,
    errors.InvalidCursor,
    errors.InvalidPeriod,
}


def test_every_domain_error_has_an_answer() -> None:
    domain = {
        kind
        for kind in vars(errors).values()
        if isinstance(kind, type) and issubclass(kind, errors.ChatJobsError)
    }
    missing = {kind.__name__ for kind in domain - HANDLED_ELSEWHERE if answer_for(kind) is None}
    assert not missing
    assert set(DOMAIN_ANSWERS) <= domain


@pytest.mark.parametrize("path", ["/v1/jobs/{}", "/v1/batches/{}", "/v1/batches/{}/results"])
async def test_a_404_echoes_a_bounded_part_of_the_id(api: Api, path: str) -> None:
    answer = await api.client.get(path.format("x" * 10_000), headers=T1)

    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert message.startswith("x" * 64 + "…") and len(message) < 100


async def test_an_unknown_model_names_the_field(api: Api) -> None:
    answer = await api.submit(chat(model="nope"))

    assert answer.status_code == 422
    assert answer.json()["error"]["fields"][0]["field"] == "model"
