"""FileService: the OpenAI dialect's files, each its tenant's own, on the FileStorage port.

Layout (every key starts with the tenant's folder, so no lookup can reach another tenant's):

    {tenant}/files/{newest-first}-{file_id}.json   the file's metadata (StoredFile)
    {tenant}/blobs/{file_id}                       its bytes
    {tenant}/batches/{newest-first}-{batch_id}.json  an OpenAI batch's record (api/openai)

Ids carry their creation time (milliseconds, in their first 12 hex digits), and keys order by it
inverted, so a folder's keys list newest first and a page can start after any id without an index.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import IO, Literal, TypeVar

from pydantic import BaseModel

from shared.errors import NotFound
from shared.ports import FileStorage

Purpose = Literal["batch", "batch_output"]
Model = TypeVar("Model", bound=BaseModel)

HEX_ID = re.compile(r"[0-9a-f]{32}")
FILE_ID = re.compile(r"file-([0-9a-f]{32})(-output|-errors)?")
NEWEST_FIRST = (1 << 48) - 1


_last_ms = 0


def new_hex() -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits. Within a process each
    id is a millisecond past the one before, so ids made one after another list in order."""
    global _last_ms
    _last_ms = max(int(time.time() * 1000), _last_ms + 1)
    return f"{_last_ms:012x}{secrets.token_hex(10)}"


def created_ms(hex_id: str) -> int:
    return int(hex_id[:12], 16)


def tenant_folder(tenant: str) -> str:
    """Tenant names are the operator's (any characters): a digest keeps them out of paths."""
    return hashlib.sha256(tenant.encode()).hexdigest()[:32]


class Shelf:
    """JSON records of one kind, by tenant and time-ordered id (`prefix` + 32 hex digits)."""

    def __init__(self, storage: FileStorage, kind: str, id_pattern: re.Pattern[str]) -> None:
        self.storage, self.kind, self.id_pattern = storage, kind, id_pattern

    def folder(self, tenant: str) -> str:
        return f"{tenant_folder(tenant)}/{self.kind}/"

    def key(self, tenant: str, record_id: str) -> str | None:
        """None for an id this shelf never makes (so it is simply not found)."""
        match = self.id_pattern.fullmatch(record_id)
        if match is None:
            return None
        order = NEWEST_FIRST - created_ms(match.group(1))
        return f"{self.folder(tenant)}{order:012x}-{record_id}.json"

    async def put(self, tenant: str, record_id: str, record: BaseModel) -> None:
        key = self.key(tenant, record_id)
        assert key is not None, record_id
        await self.storage.put(key, io.BytesIO(record.model_dump_json().encode()))

    async def get(self, tenant: str, record_id: str, kind: type[Model]) -> Model | None:
        key = self.key(tenant, record_id)
        data = await self.storage.get(key) if key else None
        return kind.model_validate_json(data) if data is not None else None

    async def delete(self, tenant: str, record_id: str) -> None:
        if key := self.key(tenant, record_id):
            await self.storage.delete(key)

    async def page(
        self, tenant: str, kind: type[Model], *, after: str | None, limit: int
    ) -> list[Model]:
        """Up to `limit` records, newest first, after the record `after` (when it is one)."""
        start = self.key(tenant, after) if after else None
        keys = await self.storage.keys(self.folder(tenant), start_after=start, limit=limit)
        found = await asyncio.gather(*(self.storage.get(key) for key in keys))
        return [kind.model_validate_json(data) for data in found if data is not None]

    async def all_ids(self, tenant: str) -> list[str]:
        """Every record's id, newest first (for the rarer oldest-first listings)."""
        keys: list[str] = []
        while page := await self.storage.keys(
            self.folder(tenant), start_after=keys[-1] if keys else None, limit=1000
        ):
            keys += page
        return [key.rsplit("/", 1)[1].split("-", 1)[1].removesuffix(".json") for key in keys]


class StoredFile(BaseModel):
    """A file's metadata; `version` says what a generated file was made from."""

    id: str
    filename: str
    purpose: Purpose
    bytes: int
    created_at: int
    status: Literal["uploaded", "processed", "error"] = "processed"
    version: str | None = None


class FileService:
    def __init__(self, storage: FileStorage) -> None:
        self.storage = storage
        self.metadata = Shelf(storage, "files", FILE_ID)

    def _blob(self, tenant: str, file_id: str) -> str:
        return f"{tenant_folder(tenant)}/blobs/{file_id}"

    async def create(
        self,
        tenant: str,
        body: IO[bytes],
        *,
        filename: str,
        purpose: Purpose,
        size: int,
        file_id: str | None = None,
        version: str | None = None,
    ) -> StoredFile:
        """Store `body` (from its current position) as a new file, or as `file_id` anew."""
        hex_id = new_hex()
        file = StoredFile(
            id=file_id or f"file-{hex_id}",
            filename=filename,
            purpose=purpose,
            bytes=size,
            created_at=created_ms(hex_id) // 1000,
            version=version,
        )
        await self.storage.put(self._blob(tenant, file.id), body)
        await self.metadata.put(tenant, file.id, file)
        return file

    async def find(self, tenant: str, file_id: str) -> StoredFile | None:
        return await self.metadata.get(tenant, file_id, StoredFile)

    async def get(self, tenant: str, file_id: str) -> StoredFile:
        file = await self.find(tenant, file_id)
        if file is None:
            raise NotFound(file_id)
        return file

    async def page(
        self, tenant: str, *, purpose: str | None, after: str | None, limit: int, newest_first: bool
    ) -> tuple[list[StoredFile], bool]:
        """A page of the tenant's files and whether more follow."""
        if not newest_first:
            return await self._oldest_first(tenant, purpose, after, limit)
        found: list[StoredFile] = []
        cursor = after
        while len(found) <= limit:
            page = await self.metadata.page(tenant, StoredFile, after=cursor, limit=100)
            found += [f for f in page if purpose is None or f.purpose == purpose]
            if len(page) < 100:
                break
            cursor = page[-1].id
        return found[:limit], len(found) > limit

    async def _oldest_first(
        self, tenant: str, purpose: str | None, after: str | None, limit: int
    ) -> tuple[list[StoredFile], bool]:
        ids = list(reversed(await self.metadata.all_ids(tenant)))
        if after in ids:
            ids = ids[ids.index(after) + 1 :]
        found: list[StoredFile] = []
        for file_id in ids:
            file = await self.find(tenant, file_id)
            if file is not None and (purpose is None or file.purpose == purpose):
                found.append(file)
                if len(found) > limit:
                    break
        return found[:limit], len(found) > limit

    async def content(self, tenant: str, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks (NotFound before the first, when it is not the tenant's)."""
        await self.get(tenant, file_id)
        return self.storage.stream(self._blob(tenant, file_id))

    async def delete(self, tenant: str, file_id: str) -> None:
        await self.get(tenant, file_id)
        await self.metadata.delete(tenant, file_id)
        await self.storage.delete(self._blob(tenant, file_id))
