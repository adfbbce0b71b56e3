"""/openai/v1/files: OpenAI's Files API for batch input and output files, each its tenant's own.

An upload is parsed after the caller is authenticated (python-multipart spools the file part to
disk past 1 MiB: it is never held whole in memory), measured in a thread, then copied to
storage in chunks. BodyLimitMiddleware refuses a body past FILES_MAX_BYTES (plus the form's own
bytes) while it arrives, so an oversized upload is cut off, not spooled whole.
"""

from __future__ import annotations

import asyncio
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from api.deps import BatchesDep, FilesDep, RateLimitedTenant, TenantDep
from api.openai.batch_files import refresh_generated
from api.openai.errors import OpenAIError, OpenAIErrorResponse
from api.openai.objects import FileDeleted, FileList, FileObject

router = APIRouter()

FILES_MAX_BYTES = 200 * 1024 * 1024
FILES_MAX_LINES = 50_000
FORM_SLACK_BYTES = 1 << 20  # the part headers and the `purpose` field around the file
CHUNK_BYTES = 1 << 20
MAX_FILENAME_CHARS = 255

FileId = Annotated[
    str,
    Path(
        max_length=128,
        description="The file's id (`file-…`).",
        examples=["file-0198a3c4d5e6f70812345678901234ab"],
    ),
]
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "additionalProperties": False,
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": f"JSONL: one request a line, at most "
                            f"{FILES_MAX_LINES} lines and {FILES_MAX_BYTES} bytes",
                        },
                        "purpose": {"type": "string", "enum": ["batch"]},
                    },
                }
            }
        },
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorResponse, "description": text}
    for code, text in {
        400: "Malformed form, a purpose other than `batch`, or too many lines",
        401: "No valid API key",
        404: "No such file for this key",
        413: "The file is larger than FILES_MAX_BYTES",
        429: "Over the rate limit; retry after Retry-After",
        503: "File storage is not configured here",
    }.items()
}


@router.post("/files", response_model=FileObject, openapi_extra=UPLOAD_BODY, responses=ERRORS)
async def create_file(request: Request, files: FilesDep, tenant: RateLimitedTenant) -> FileObject:
    """Upload a batch input file (multipart: `file`, `purpose=batch`)."""
    async with request.form(max_files=1, max_fields=8) as form:
        if unknown := sorted(set(form.keys()) - {"file", "purpose"}):
            message = f"unknown form field(s): {', '.join(n[:40] for n in unknown[:5])}"
            raise OpenAIError(400, "unknown_parameter", message, param=unknown[0][:64])
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose != "batch":
            raise OpenAIError(400, "invalid_purpose", "purpose must be 'batch'", param="purpose")
        if not isinstance(upload, UploadFile):
            message = "file is required: the JSONL file as a multipart part named `file`"
            raise OpenAIError(400, "missing_file", message, param="file")
        size, lines = await asyncio.to_thread(measure, upload.file)
        if size > FILES_MAX_BYTES:
            message = f"the file is larger than {FILES_MAX_BYTES} bytes"
            raise OpenAIError(413, "file_too_large", message, param="file")
        if lines > FILES_MAX_LINES:
            message = f"the file has more than {FILES_MAX_LINES} lines"
            raise OpenAIError(400, "too_many_lines", message, param="file")
        stored = await files.create(
            tenant, upload.file, filename=_filename(upload.filename), purpose="batch", size=size
        )
    return FileObject.of(stored)


def measure(body: IO[bytes]) -> tuple[int, int]:
    """Bytes and lines (a last line without its newline counts), and rewind; stops counting
    past FILES_MAX_BYTES."""
    body.seek(0)
    size = lines = 0
    last = b"\n"
    while (chunk := body.read(CHUNK_BYTES)) and size <= FILES_MAX_BYTES:
        size += len(chunk)
        lines += chunk.count(b"\n")
        last = chunk[-1:]
    body.seek(0)
    return size, lines + (last != b"\n")


def _filename(name: str | None) -> str:
    bare = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return bare[:MAX_FILENAME_CHARS] or "upload.jsonl"


@router.get("/files", response_model=FileList, responses=ERRORS)
async def list_files(
    files: FilesDep,
    tenant: TenantDep,
    purpose: Annotated[
        str | None,
        Query(max_length=64, description="Only files of this purpose.", examples=["batch"]),
    ] = None,
    after: Annotated[
        str | None,
        Query(
            max_length=128,
            description="The page after this file (the last id of the page before).",
            examples=["file-0198a3c4d5e6f70812345678901234ab"],
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="Files per page.", examples=[100])
    ] = 100,
    order: Annotated[
        Literal["asc", "desc"],
        Query(description="`desc`: newest first; `asc`: oldest first.", examples=["desc"]),
    ] = "desc",
) -> FileList:
    """The caller's files, newest first (`order=asc`: oldest first), a page at a time."""
    found, more = await files.page(
        tenant, purpose=purpose, after=after, limit=limit, newest_first=order == "desc"
    )
    data = [FileObject.of(file) for file in found]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


@router.get("/files/{file_id}", response_model=FileObject, responses=ERRORS)
async def retrieve_file(
    file_id: FileId, files: FilesDep, batches: BatchesDep, tenant: TenantDep
) -> FileObject:
    """A file's metadata (a finished batch's output and error files are made on first read)."""
    await refresh_generated(tenant, file_id, files, batches)
    return FileObject.of(await files.get(tenant, file_id))


@router.get(
    "/files/{file_id}/content",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file's bytes"},
        **ERRORS,
    },
)
async def download_file_content(
    file_id: FileId, files: FilesDep, batches: BatchesDep, tenant: TenantDep
) -> StreamingResponse:
    """The file's bytes, streamed."""
    await refresh_generated(tenant, file_id, files, batches)
    chunks = await files.content(tenant, file_id)
    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.delete("/files/{file_id}", response_model=FileDeleted, responses=ERRORS)
async def delete_file(file_id: FileId, files: FilesDep, tenant: TenantDep) -> FileDeleted:
    """Delete a file (a batch's output file is made again if it is read again)."""
    await files.delete(tenant, file_id)
    return FileDeleted(id=file_id)
