"""Dead letters: job messages a queue gave up delivering (received MAX_RECEIVE_COUNT times and
never acknowledged), kept in the queue's dead-letter queue until an operator redrives them.

Only the AWS layout has such queues (SQS). Embedded and Redis/arq have none: a job that fails
for good is a `failed` job in the store, listed under Jobs. Redriving a job's message is safe
whatever the job has become since: the worker claims a job with a compare-and-set on the store,
so the message of a job already finished is acknowledged and nothing runs again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from shared.errors import ChatJobsError

if TYPE_CHECKING:
    from shared.ports import DeadLetters

NO_QUEUES_NOTE = (
    "This layout has no dead-letter queues: a job that fails for good is kept as a failed job "
    "(Jobs, status=failed), and can be retried from there."
)
REDRIVE_LIMIT = 250  # messages moved by one redrive: a request stays short; redrive again for more


class DeadLetterQueue(BaseModel):
    """One source queue's dead-letter queue and how many messages wait in it."""

    queue: str = Field(
        description="The source queue's role: `jobs` (normal singles), `batch` (normal batch "
        "jobs), `high` or `low`; the `{queue}` to redrive.",
        examples=["jobs"],
    )
    source_queue: str = Field(description="The source queue's name.", examples=["chatjobs-jobs"])
    dead_letter_queue: str = Field(
        description="The dead-letter queue's name.", examples=["chatjobs-jobs-dlq"]
    )
    messages: int = Field(
        description="Messages waiting to be redriven (SQS's ApproximateNumberOfMessages).",
        examples=[3],
    )
    in_flight: int = Field(
        description="Messages received from it and not yet deleted, e.g. by a redrive under way "
        "(ApproximateNumberOfMessagesNotVisible).",
        examples=[0],
    )


class DeadLetterReport(BaseModel):
    """Every dead-letter queue of the layout, or why there is none."""

    has_dead_letter_queues: bool = Field(
        description="False in the embedded and Redis/arq layouts, which have no dead-letter "
        "queues (`data` is then empty, and `note` says where failed jobs are)."
    )
    note: str | None = Field(description="Said when the layout has no dead-letter queues.")
    data: list[DeadLetterQueue] = Field(description="One per source queue.")


class Redriven(BaseModel):
    """What one redrive moved back to the source queue."""

    queue: str = Field(description="The source queue's role.", examples=["jobs"])
    moved: int = Field(
        description=f"Messages moved back to the source queue (at most {REDRIVE_LIMIT} a call).",
        examples=[3],
    )
    remaining: int = Field(
        description="Messages still in the dead-letter queue after it (approximate): redrive "
        "again to move them.",
        examples=[0],
    )


class UnknownQueue(ChatJobsError):
    """No dead-letter queue of that role in this layout."""

    def __init__(self, queue: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "this layout has none"
        super().__init__(f"no dead-letter queue {queue[:64]!r} (queues: {listed})")
        self.queue = queue


class NoDeadLetters:
    """The DeadLetters port of a layout with no dead-letter queues (embedded, Redis/arq)."""

    has_queues = False

    async def depths(self) -> list[DeadLetterQueue]:
        return []

    async def redrive(self, queue: str, limit: int = REDRIVE_LIMIT) -> int:
        raise UnknownQueue(queue, [])


class DeadLetterDesk:
    """What the operator reads and does with dead letters (AdminService.dead_letters)."""

    def __init__(self, port: DeadLetters) -> None:
        self.port = port

    async def report(self) -> DeadLetterReport:
        if not self.port.has_queues:
            return DeadLetterReport(has_dead_letter_queues=False, note=NO_QUEUES_NOTE, data=[])
        return DeadLetterReport(
            has_dead_letter_queues=True, note=None, data=await self.port.depths()
        )

    async def redrive(self, queue: str) -> Redriven:
        """Move a bounded number of `queue`'s dead letters back to it (REDRIVE_LIMIT a call)."""
        moved = await self.port.redrive(queue)
        left = [d.messages for d in await self.port.depths() if d.queue == queue]
        return Redriven(queue=queue, moved=moved, remaining=sum(left))
