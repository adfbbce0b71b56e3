"""Dead letters as the operator reads them (DeadLetterDesk over the port), and which layouts
have dead-letter queues at all (the composition root's choice)."""

from __future__ import annotations

import pytest

from shared.adapters.choose import Adapters
from shared.dead_letters import REDRIVE_LIMIT, DeadLetterDesk, NoDeadLetters, UnknownQueue
from tests.conftest import make_settings
from tests.fakes import FakeDeadLetters


@pytest.mark.parametrize(
    ("layout", "has_queues"),
    [
        ({"queue_backend": "inprocess"}, False),
        ({"queue_backend": "arq", "redis_url": "redis://127.0.0.1:1"}, False),
        (
            {
                "queue_backend": "sqs",
                "store_backend": "dynamodb",
                "sqs_queue_url": "http://127.0.0.1:1/000000000000/chatjobs-jobs",
            },
            True,
        ),
    ],
)
def test_only_the_aws_layout_has_dead_letter_queues(
    layout: dict[str, str], has_queues: bool
) -> None:
    assert Adapters(make_settings(**layout)).dead_letters().has_queues is has_queues


async def test_a_layout_without_queues_says_where_failed_jobs_are() -> None:
    report = await DeadLetterDesk(NoDeadLetters()).report()
    assert report.has_dead_letter_queues is False and report.data == []
    assert report.note is not None and "status=failed" in report.note
    with pytest.raises(UnknownQueue, match="this layout has none"):
        await DeadLetterDesk(NoDeadLetters()).redrive("jobs")


async def test_a_redrive_is_bounded_and_says_what_remains() -> None:
    dead = FakeDeadLetters("jobs", "low")
    dead.dead["low"] = [f"m{n}" for n in range(REDRIVE_LIMIT + 7)]
    desk = DeadLetterDesk(dead)

    first = await desk.redrive("low")

    assert (first.moved, first.remaining) == (REDRIVE_LIMIT, 7)
    second = await desk.redrive("low")
    assert (second.moved, second.remaining) == (7, 0)
    assert dead.sources["low"] == [f"m{n}" for n in range(REDRIVE_LIMIT + 7)]
    with pytest.raises(UnknownQueue, match="jobs, low"):
        await desk.redrive("batch")
