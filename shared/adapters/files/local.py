"""LocalFileStorage: objects as files under FILES_DIR (embedded and self-hosted layouts).

A write goes to a temporary file beside its target and is renamed over it, so a reader sees the
old object or the new one. Disk work runs in threads: a 200 MB copy must not hold the event loop.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

from shared.adapters.files import CHUNK_BYTES, checked


class LocalFileStorage:
    def __init__(self, root: str) -> None:
        self.root = Path(root)

    async def start(self) -> None:
        """Nothing to open: folders are made by the first write into them."""

    async def close(self) -> None: ...

    def _path(self, key: str) -> Path:
        return self.root / checked(key)

    async def put(self, key: str, body: IO[bytes]) -> None:
        await asyncio.to_thread(self._put, self._path(key), body)

    @staticmethod
    def _put(path: Path, body: IO[bytes]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".part-", delete=False) as part:
            try:
                shutil.copyfileobj(body, part, CHUNK_BYTES)
                part.flush()
                os.fsync(part.fileno())
            except BaseException:
                os.unlink(part.name)
                raise
        os.replace(part.name, path)

    async def get(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(self._path(key).open, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
                yield chunk
        finally:
            file.close()

    async def keys(self, prefix: str, *, start_after: str | None = None, limit: int) -> list[str]:
        folder = prefix.rstrip("/")
        names = await asyncio.to_thread(self._names, self._path(folder))
        keys = (f"{folder}/{name}" for name in names)
        return [key for key in keys if start_after is None or key > start_after][:limit]

    @staticmethod
    def _names(folder: Path) -> list[str]:
        try:
            return sorted(
                entry.name
                for entry in os.scandir(folder)
                if entry.is_file() and not entry.name.startswith(".")
            )
        except FileNotFoundError:
            return []

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)
