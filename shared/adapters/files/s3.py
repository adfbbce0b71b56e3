"""S3FileStorage: objects in FILES_BUCKET (the AWS layout), through the process's aioboto3 client.

Writes use `upload_fileobj`, which sends a large body as a multipart upload, a part at a time,
and makes the object appear whole only when the last part is in. The bucket encrypts at rest and
expires objects by its lifecycle rule (infra/terraform/files.tf).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO, Any

from boto3.s3.transfer import TransferConfig

from shared.adapters.aws.clients import AwsClients
from shared.adapters.files import CHUNK_BYTES, checked

# Parts in flight at once, each multipart_chunksize (8 MiB) in memory: bounds an upload's RSS.
TRANSFER = TransferConfig(max_concurrency=4)


class S3FileStorage:
    """Builds no client until its first call; `close` leaves the shared clients open."""

    def __init__(self, clients: AwsClients, bucket: str) -> None:
        self._clients = clients
        self.bucket = bucket

    async def _s3(self) -> Any:
        return await self._clients.client("s3")

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, key: str, body: IO[bytes]) -> None:
        s3 = await self._s3()
        await s3.upload_fileobj(body, self.bucket, checked(key), Config=TRANSFER)

    async def get(self, key: str) -> bytes | None:
        s3 = await self._s3()
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=checked(key))
        except s3.exceptions.NoSuchKey:
            return None
        body = answer["Body"]
        try:
            data: bytes = await body.read()
        finally:
            body.close()
        return data

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        s3 = await self._s3()
        try:
            answer = await s3.get_object(Bucket=self.bucket, Key=checked(key))
        except s3.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        body = answer["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def keys(self, prefix: str, *, start_after: str | None = None, limit: int) -> list[str]:
        s3 = await self._s3()
        keys: list[str] = []
        token: dict[str, str] = {"StartAfter": start_after} if start_after else {}
        while len(keys) < limit:
            page = await s3.list_objects_v2(
                Bucket=self.bucket,
                Prefix=checked(prefix.rstrip("/")) + "/",
                Delimiter="/",
                MaxKeys=min(1000, limit - len(keys)),
                **token,
            )
            keys += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        return keys[:limit]

    async def delete(self, key: str) -> None:
        s3 = await self._s3()
        await s3.delete_object(Bucket=self.bucket, Key=checked(key))
