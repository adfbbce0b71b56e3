"""What a running job tells its followers, as plain data: the pieces a provider streams
(`Delta`), the entries of a job's stream (`StreamEvent`), and the rule that relays one
attempt's text to a client without ever mixing in another's (`AnswerRelay`). No I/O here: the
JobStreams adapters carry the events, shared/answer_stream.py reads them.

The rule: every delta names its source (the job's attempt and the provider that wrote it) and
its index within that source's text, from 0. A follower relays the text of the first source it
sees from its start; if that source then fails (another source's delta, or the job going back to
`queued` for a retry), or an index is missing (the bounded stream lost entries), what was relayed
can no longer become the answer, and the follower is told so (`interrupted`). The job itself goes
on: its answer is read from the job record. A follower that has relayed nothing yet follows the
next source instead.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shared.models import Completion, JobStatus

EventKind = Literal["status", "delta"]


@dataclass(frozen=True, slots=True)
class Delta:
    """A streamed piece of the answer's text, written by `provider`; a stream's last one (text
    "") carries the Completion."""

    text: str
    provider: str
    completion: Completion | None = None


async def streamed(
    completion: Completion, pieces: Sequence[str] | None = None
) -> AsyncGenerator[Delta, None]:
    """A finished answer as a stream, for a provider with no stream of its own: `pieces` (which
    join into its content; default: the content whole), then the Completion."""
    for text in [completion.content] if pieces is None else pieces:
        yield Delta(text, completion.provider)
    yield Delta("", completion.provider, completion)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One entry of a job's stream: its status changed (`status`), or a piece of the answer
    came (`delta`, with `text`, its `provider` and its `index` within that provider's text of
    this attempt)."""

    kind: EventKind
    attempt: int
    status: JobStatus | None = None
    provider: str = ""
    index: int = 0
    text: str = ""

    @classmethod
    def changed(cls, status: JobStatus, attempt: int) -> StreamEvent:
        return cls("status", attempt, status=status)

    @classmethod
    def piece(cls, attempt: int, provider: str, index: int, text: str) -> StreamEvent:
        return cls("delta", attempt, provider=provider, index=index, text=text)

    @property
    def source(self) -> tuple[int, str]:
        return self.attempt, self.provider

    @property
    def ends(self) -> bool:
        """The job's last event: it reached a terminal status."""
        return self.status is not None and self.status.is_terminal

    def fields(self) -> dict[str, str]:
        """Flat string fields (a Redis Stream entry)."""
        if self.kind == "status":
            assert self.status is not None
            return {"k": "status", "a": str(self.attempt), "s": self.status.value}
        return {
            "k": "delta",
            "a": str(self.attempt),
            "p": self.provider,
            "i": str(self.index),
            "t": self.text,
        }

    @classmethod
    def of_fields(cls, fields: dict[str, str]) -> StreamEvent:
        attempt = int(fields["a"])
        if fields["k"] == "status":
            return cls.changed(JobStatus(fields["s"]), attempt)
        return cls.piece(attempt, fields["p"], int(fields["i"]), fields["t"])


Step = Literal["relay", "skip", "interrupted"]


@dataclass
class AnswerRelay:
    """Decides, event by event, what a follower may pass on (see the module's rule)."""

    source: tuple[int, str] | None = None
    next_index: int = 0
    relayed: list[str] = field(default_factory=list)

    def step(self, event: StreamEvent) -> Step:
        if event.kind == "status":
            return self._status(event)
        if self.source is None:
            if event.index != 0:
                return "skip"  # the start of this text is gone: wait for the next source
            self.source = event.source
        elif event.source != self.source or event.index != self.next_index:
            return "interrupted"
        self.next_index += 1
        self.relayed.append(event.text)
        return "relay"

    def _status(self, event: StreamEvent) -> Step:
        if self.source is not None and event.status is JobStatus.queued:
            return "interrupted"  # the attempt we relayed failed: a retry follows
        return "skip"

    @property
    def text(self) -> str:
        return "".join(self.relayed)
