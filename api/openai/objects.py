"""OpenAI's File and Batch objects, and the record an OpenAI batch keeps beside the native one.

An OpenAI batch is a native batch (same id, same jobs, counts, cancel and webhooks) plus a
`BatchRecord` in file storage: what only this dialect has (input file, endpoint, window, the
errors of a file that failed validation). Its status and counts are read from the native batch.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.openai.batch_input import LineError
from shared.files import StoredFile
from shared.models import Batch, BatchStatus, WebhookUrl

COMPLETION_WINDOW_S = 86_400
MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class FileObject(BaseModel):
    """A file (OpenAI's File object): an uploaded batch input, or a batch's output or errors."""

    id: str = Field(
        description="The file's id.", examples=["file-0198a3c4d5e6f70812345678901234ab"]
    )
    object: Literal["file"] = Field("file", description="Always `file`.")
    bytes: int = Field(description="Its size in bytes.", examples=[1024])
    created_at: int = Field(description="When it was made (Unix seconds).", examples=[1767607200])
    filename: str = Field(description="The name it was uploaded with.", examples=["input.jsonl"])
    purpose: str = Field(
        description="`batch` (an input) or `batch_output` (a batch's output or errors).",
        examples=["batch"],
    )
    status: Literal["uploaded", "processed", "error"] = Field(
        "processed", description="Always `processed` (OpenAI deprecated it)."
    )
    expires_at: int | None = Field(None, description="Always null: files are kept until deleted.")
    status_details: str | None = Field(None, description="Always null (deprecated).")

    @classmethod
    def of(cls, file: StoredFile) -> FileObject:
        return cls.model_validate(file.model_dump(exclude={"version"}))


class FileList(BaseModel):
    """A page of the caller's files; `after=last_id` reads the next while `has_more`."""

    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[FileObject] = Field(description="The files of this page.")
    first_id: str | None = Field(None, description="The first file's id.")
    last_id: str | None = Field(None, description="The last file's id: the next page's `after`.")
    has_more: bool = Field(False, description="Whether another page follows.")


class FileDeleted(BaseModel):
    """The answer to a delete."""

    id: str = Field(description="The deleted file's id.")
    object: Literal["file"] = Field("file", description="Always `file`.")
    deleted: bool = Field(True, description="Always true.")


class BatchCreateBody(BaseModel):
    """Body of POST /openai/v1/batches."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "input_file_id": "file-0198a3c4d5e6f70812345678901234ab",
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                }
            ]
        },
    )

    input_file_id: str = Field(
        max_length=128,
        description="An uploaded file (`purpose=batch`), one request a line.",
        examples=["file-0198a3c4d5e6f70812345678901234ab"],
    )
    endpoint: Literal["/v1/chat/completions"] = Field(
        description="Only chat completions.", examples=["/v1/chat/completions"]
    )
    completion_window: Literal["24h"] = Field(description="Only `24h`.", examples=["24h"])
    metadata: dict[MetadataKey, MetadataValue] | None = Field(
        None,
        max_length=16,
        description="Up to 16 pairs, echoed back (and on the native batch).",
        examples=[{"run": "nightly"}],
    )
    webhook_url: WebhookUrl = None  # chatjobs' own: where `batch.completed` is sent


class BatchRecord(BaseModel):
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created_at: int
    metadata: dict[str, str] | None = None
    errors: list[LineError] = Field(default_factory=list)
    cancelling_at: int | None = None


class RequestCounts(BaseModel):
    """The batch's requests: all, succeeded, failed (exact)."""

    total: int = Field(0, description="Requests in the batch.")
    completed: int = Field(0, description="Requests answered.")
    failed: int = Field(0, description="Requests that failed (cancelled ones are in neither).")


class BatchErrors(BaseModel):
    """Why the input file was refused, line by line."""

    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[LineError] = Field(description="The first bad lines (up to 100).")


OpenAIBatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
_AT = "(Unix seconds); null until then."


class OpenAIBatch(BaseModel):
    """OpenAI's batch object; `id` is the native batch's too (GET /v1/batches/{id})."""

    id: str = Field(description="The batch's id.", examples=["batch_0198a3c4d5e6f708123456789012"])
    object: Literal["batch"] = Field("batch", description="Always `batch`.")
    endpoint: str = Field(description="Always `/v1/chat/completions`.")
    errors: BatchErrors | None = Field(None, description="Why it failed validation, if it did.")
    input_file_id: str = Field(description="The file its requests came from.")
    completion_window: str = Field(description="Always `24h`.")
    status: OpenAIBatchStatus = Field(
        description="`validating` (being made), `failed` (a bad input file), `in_progress`, "
        "`finalizing` (every request done), `completed`, `cancelling`, `cancelled`."
    )
    output_file_id: str | None = Field(
        None, description="Once it has ended: the file of its answers, in input order."
    )
    error_file_id: str | None = Field(
        None, description="Once it has ended: the file of its failed and cancelled requests."
    )
    created_at: int = Field(description="When it was created (Unix seconds).")
    in_progress_at: int | None = Field(None, description=f"When it started {_AT}")
    expires_at: int | None = Field(None, description="The end of its completion window.")
    finalizing_at: int | None = Field(None, description=f"When its last request ended {_AT}")
    completed_at: int | None = Field(None, description=f"When it completed {_AT}")
    failed_at: int | None = Field(None, description=f"When it failed validation {_AT}")
    expired_at: int | None = Field(None, description="Always null: batches here do not expire.")
    cancelling_at: int | None = Field(None, description=f"When it was cancelled {_AT}")
    cancelled_at: int | None = Field(None, description=f"When its cancel ended {_AT}")
    request_counts: RequestCounts = Field(description="Its requests by outcome.")
    metadata: dict[str, str] | None = Field(None, description="As it was created with.")


class BatchList(BaseModel):
    """A page of the caller's OpenAI batches; `after=last_id` reads the next while `has_more`."""

    object: Literal["list"] = Field("list", description="Always `list`.")
    data: list[OpenAIBatch] = Field(description="The batches of this page, newest first.")
    first_id: str | None = Field(None, description="The first batch's id.")
    last_id: str | None = Field(None, description="The last batch's id: the next page's `after`.")
    has_more: bool = Field(False, description="Whether another page follows.")


def output_file_id(batch_id: str) -> str:
    return f"file-{batch_id.removeprefix('batch_')}-output"


def error_file_id(batch_id: str) -> str:
    return f"file-{batch_id.removeprefix('batch_')}-errors"


def batch_object(record: BatchRecord, native: Batch | None) -> OpenAIBatch:
    """The record as OpenAI shows it, its status, counts and times read from the native batch
    (None: the native batch is still being made)."""
    fields = record.model_dump(exclude={"errors", "cancelling_at"})
    fields["expires_at"] = record.created_at + COMPLETION_WINDOW_S
    if record.errors:
        return OpenAIBatch(
            **fields,
            status="failed",
            failed_at=record.created_at,
            errors=BatchErrors(data=record.errors),
            request_counts=RequestCounts(),
        )
    if native is None:
        return OpenAIBatch(**fields, status="validating", request_counts=RequestCounts())
    counts = native.counts
    ended = _seconds(native.completed_at)
    finished = native.status in (BatchStatus.completed, BatchStatus.cancelled)
    return OpenAIBatch(
        **fields,
        status=_status(native),
        in_progress_at=record.created_at,
        finalizing_at=ended,
        completed_at=ended if native.status is BatchStatus.completed else None,
        cancelling_at=record.cancelling_at if record.cancelling_at else _cancelling(native),
        cancelled_at=ended if native.status is BatchStatus.cancelled else None,
        output_file_id=output_file_id(record.id) if finished and counts.succeeded else None,
        error_file_id=error_file_id(record.id)
        if finished and counts.failed + counts.cancelled
        else None,
        request_counts=RequestCounts(
            total=counts.total, completed=counts.succeeded, failed=counts.failed
        ),
    )


ENDED: dict[BatchStatus, OpenAIBatchStatus] = {
    BatchStatus.completed: "completed",
    BatchStatus.cancelling: "cancelling",
    BatchStatus.cancelled: "cancelled",
}


def _status(native: Batch) -> OpenAIBatchStatus:
    if native.status is BatchStatus.in_progress:
        done = native.counts.done >= native.counts.total
        return "finalizing" if done else "in_progress"
    return ENDED[native.status]


def _cancelling(native: Batch) -> int | None:
    """A batch cancelled through the native API has no record of when: its end stands in."""
    if native.status in (BatchStatus.cancelling, BatchStatus.cancelled):
        return _seconds(native.completed_at) or None
    return None


def _seconds(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None
