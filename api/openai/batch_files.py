"""An OpenAI batch's output and error files, made from its jobs on first read.

Nothing is written while the batch runs: when a finished batch's `output_file_id` (its succeeded
requests) or `error_file_id` (failed and cancelled ones) is first read, the file is rendered from
the batch's jobs, in input order, in OpenAI's line format, and stored like an upload. It carries
the batch's completion time as its version: a batch that ran again (native retry-failed) renders
anew on the next read.
"""

from __future__ import annotations

import json
import re
import tempfile
from typing import IO, Any

from api.batch_body import SPOOL_MEMORY_BYTES
from api.openai.objects import BatchRecord
from api.openai.schemas import completion_of
from shared.batches import BatchService
from shared.errors import NotFound
from shared.files import FILE_ID, FileService, Shelf
from shared.models import BatchStatus, Job, JobStatus

BATCH_ID = re.compile(r"batch_([0-9a-f]{32})")


def batch_records(files: FileService) -> Shelf:
    return Shelf(files.storage, "batches", BATCH_ID)


async def refresh_generated(
    tenant: str, file_id: str, files: FileService, batches: BatchService
) -> None:
    """Make (or make anew) a finished batch's output or error file, when `file_id` names one.
    Anything else is left for the lookup that follows to find, or not."""
    match = FILE_ID.fullmatch(file_id)
    if match is None or match.group(2) is None:
        return
    batch_id = f"batch_{match.group(1)}"
    if await batch_records(files).get(tenant, batch_id, BatchRecord) is None:
        return
    try:
        native = await batches.get(tenant, batch_id)
    except NotFound:
        return
    if native.status not in (BatchStatus.completed, BatchStatus.cancelled):
        return
    version = native.completed_at.isoformat() if native.completed_at else ""
    existing = await files.find(tenant, file_id)
    if existing is not None and existing.version == version:
        return
    errors = match.group(2) == "-errors"
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool:
        size = await _render(spool, batches.jobs(tenant, batch_id), errors=errors)
        spool.seek(0)
        suffix = "error" if errors else "output"
        await files.create(
            tenant,
            spool,
            filename=f"{batch_id}_{suffix}.jsonl",
            purpose="batch_output",
            size=size,
            file_id=file_id,
            version=version,
        )


async def _render(spool: IO[bytes], jobs: Any, *, errors: bool) -> int:
    size = 0
    async for job in jobs:
        if (job.status is JobStatus.succeeded) == errors or not job.status.is_terminal:
            continue
        line = json.dumps(output_line(job), ensure_ascii=False).encode() + b"\n"
        spool.write(line)
        size += len(line)
    return size


def output_line(job: Job) -> dict[str, Any]:
    """OpenAI's batch output line: the request's answer, or why there is none."""
    line: dict[str, Any] = {"id": job.id, "custom_id": job.custom_id}
    if job.status is JobStatus.succeeded:
        body = completion_of(job, job.request.model or "").model_dump(mode="json")
        line["response"] = {"status_code": 200, "request_id": job.id, "body": body}
        line["error"] = None
        return line
    if job.status is JobStatus.cancelled:
        error = {"code": "batch_cancelled", "message": "the batch was cancelled before it ran"}
    else:
        code = job.error.code if job.error else "llm_unavailable"
        message = job.error.message if job.error else "no answer"
        error = {"code": code, "message": message}
    line["response"] = None
    line["error"] = error
    return line
