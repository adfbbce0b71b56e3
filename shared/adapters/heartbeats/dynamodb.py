"""DynamoDbWorkerRegistry: heartbeats as items of the single table, pk `WORKERS`, sk the worker
id, with a TTL of BEAT_KEPT_S; read with one Query of that partition (never a scan). Lambda
sandboxes and SQS pollers write them; the API's overview reads them."""

from __future__ import annotations

import logging
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.heartbeats import BEAT_KEPT_S, WorkerBeat

log = logging.getLogger(__name__)

PARTITION = "WORKERS"


class DynamoDbWorkerRegistry:
    def __init__(self, clients: AwsClients, table: str) -> None:
        self._clients, self._table = clients, table

    async def beat(self, beat: WorkerBeat) -> None:
        item = {
            names.PARTITION_KEY: {"S": PARTITION},
            names.SORT_KEY: {"S": beat.id},
            "data": {"S": beat.model_dump_json()},
            names.TTL_ATTRIBUTE: {"N": str(int(beat.last_beat.timestamp()) + BEAT_KEPT_S)},
        }
        try:
            ddb = await self._clients.client("dynamodb")
            await ddb.put_item(TableName=self._table, Item=item)
        except (BotoCoreError, ClientError) as exc:
            log.warning("heartbeat not recorded: %s", exc)

    async def beats(self) -> list[WorkerBeat]:
        ddb = await self._clients.client("dynamodb")
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "#pk = :workers",
            "ExpressionAttributeNames": {"#pk": names.PARTITION_KEY},
            "ExpressionAttributeValues": {":workers": {"S": PARTITION}},
        }
        now, found = time.time(), []
        while True:
            page = await ddb.query(**params)
            for item in page.get("Items", []):
                if int(item[names.TTL_ATTRIBUTE]["N"]) <= now:
                    continue  # expired, not yet deleted by the TTL
                try:
                    found.append(WorkerBeat.model_validate_json(item["data"]["S"]))
                except ValidationError:
                    continue
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return sorted(found, key=lambda b: b.last_beat, reverse=True)

    async def close(self) -> None:
        return None  # the shared clients are closed by the composition root
