"""CapacityMeter: the DynamoDB request units a workload would be billed on AWS, counted from the
requests the code makes (moto reports no per-index capacity).

Every successful call is applied to a shadow of the table, so each write is charged as DynamoDB
charges it: the larger of the item's old and new size per 1 KB, plus, for each index, a put, a
delete, both (its key changed) or an update of the projected item (a projected attribute
changed), or nothing (neither changed); twice inside TransactWriteItems. Reads: 4 KB units,
halved when eventually consistent (every index Query). Writes are charged under any projection
at once, so one run compares projections.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from shared.adapters.aws import names
from shared.adapters.aws.clients import AwsClients
from shared.adapters.store.dynamodb_items import unpacked

Item = dict[str, Any]
Projection = Mapping[str, tuple[str, ...] | None]  # index -> kept attributes; None: ALL
ALL: Projection = dict.fromkeys(names.INDEXES)
KEYS = (names.PARTITION_KEY, names.SORT_KEY)


def value_size(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return (len(raw.lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in raw.items())
    return sum(len(v.encode()) for v in raw)  # string and number sets


def item_size(item: Item, as_text: bool = False) -> int:
    """Bytes DynamoDB counts; `as_text`: with `data` as the JSON it was before compression."""
    return sum(
        len(name.encode())
        + (len(unpacked(value).encode()) if as_text and name == "data" else value_size(value))
        for name, value in item.items()
    )


def units(size: int, per: int) -> int:
    return max(1, math.ceil(size / per))


def projected(item: Item | None, index: str, kept: tuple[str, ...] | None) -> Item | None:
    """The index's entry of `item`, or None when the item is not in the (sparse) index."""
    if item is None or not all(a in item for a in names.INDEXES[index]):
        return None
    if kept is None:
        return dict(item)
    wanted = {*KEYS, *names.INDEXES[index], *kept}
    return {name: value for name, value in item.items() if name in wanted}


def write_units(
    old: Item | None, new: Item | None, projection: Projection, as_text: bool = False
) -> int:
    def size(item: Item | None) -> int:
        return item_size(item or {}, as_text)

    charged = units(max(size(old), size(new)), 1024)
    for index, kept in projection.items():
        before, after = projected(old, index, kept), projected(new, index, kept)
        keys = names.INDEXES[index]
        if before is None and after is None:
            continue
        if before is None or after is None:
            charged += units(size(before or after), 1024)
        elif any(before[k] != after[k] for k in keys):
            charged += units(size(before), 1024) + units(size(after), 1024)
        elif before != after:
            charged += units(max(size(before), size(after)), 1024)
    return charged


def apply_update(old: Item | None, key: Item, params: Mapping[str, Any]) -> Item:
    """The item after an UpdateItem (SET a = :v | if_not_exists / arithmetic, ADD, REMOVE)."""
    item = dict(old or key)
    aliases = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    clauses = re.split(r"\b(SET|ADD|REMOVE)\b", params["UpdateExpression"])
    for verb, body in zip(clauses[1::2], clauses[2::2], strict=True):
        for part in (p.strip() for p in body.split(",") if p.strip()):
            target, *rest = re.split(r"\s*=\s*|\s+", part, maxsplit=1)
            name = aliases.get(target, target)
            if verb == "REMOVE":
                item.pop(name, None)
                continue
            operand = re.findall(r":\w+", rest[0] if rest else "")
            if verb == "ADD" and operand and "N" in values[operand[-1]]:
                current = float(item.get(name, {"N": "0"})["N"])
                item[name] = {"N": repr(current + float(values[operand[-1]]["N"]))}
            elif operand:
                item[name] = values[operand[-1]]
    return item


class CapacityMeter:
    """`projections`: label -> (index projections, whether `data` counts as uncompressed JSON)."""

    def __init__(self, projections: Mapping[str, tuple[Projection, bool]]) -> None:
        self.projections = projections
        self.table: dict[tuple[str, str], Item] = {}
        self.wru: Counter[str] = Counter()  # by projection name
        self.rru = 0.0
        self.calls: Counter[str] = Counter()
        # units of the first projection, by (operation, kind of item: the partition key's prefix)
        self.breakdown: Counter[tuple[str, str]] = Counter()
        self.operation = ""
        self._pending: dict[int, tuple[str, dict[str, Any]]] = {}

    @staticmethod
    def _key(item: Item) -> tuple[str, str]:
        return item[names.PARTITION_KEY]["S"], item[names.SORT_KEY]["S"]

    def _write(self, key: Item, new: Item | None, factor: int = 1) -> None:
        old = self.table.get(self._key(key))
        for label, (projection, as_text) in self.projections.items():
            self.wru[label] += factor * write_units(old, new, projection, as_text)
        first, as_text = next(iter(self.projections.values()))
        kind = self._key(key)[0].split("#", 1)[0]
        self.breakdown[self.operation, kind] += factor * write_units(old, new, first, as_text)
        if new is None:
            self.table.pop(self._key(key), None)
        else:
            self.table[self._key(key)] = new

    def _op(self, kind: str, params: Mapping[str, Any], factor: int = 1) -> None:
        if kind == "Put":
            self._write(params["Item"], params["Item"], factor)
        elif kind == "Delete":
            self._write(params["Key"], None, factor)
        elif kind == "Update":
            old = self.table.get(self._key(params["Key"]))
            self._write(params["Key"], apply_update(old, params["Key"], params), factor)

    def _read(self, items: list[Item], consistent: bool) -> None:
        size = sum(item_size(i) for i in items)  # as stored
        self.rru += units(size, 4096) * (1.0 if consistent else 0.5)

    def observe(self, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        self.calls[operation] += 1
        self.operation = operation
        if "Error" in parsed:
            return  # a refused condition: rare here, and charged at most 1 unit
        if operation in ("PutItem", "DeleteItem", "UpdateItem"):
            self._op(operation.removesuffix("Item"), params)
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((kind, body),) = entry.items()
                self._op(kind, body, factor=2)
        elif operation == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for request in requests:
                    if "PutRequest" in request:
                        self._op("Put", request["PutRequest"])
                    else:
                        self._op("Delete", request["DeleteRequest"])
        elif operation == "GetItem":
            self._read([parsed.get("Item", {})], bool(params.get("ConsistentRead")))
        elif operation == "BatchGetItem":
            for table, found in parsed.get("Responses", {}).items():
                consistent = bool(params["RequestItems"][table].get("ConsistentRead"))
                for item in found:
                    self._read([item], consistent)
        elif operation == "Query":
            consistent = bool(params.get("ConsistentRead")) and "IndexName" not in params
            self._read(parsed.get("Items", []), consistent)

    @contextmanager
    def attached(self) -> Iterator[None]:
        """Meter every DynamoDB client AwsClients opens while in the block."""
        original = AwsClients.client
        meter = self

        async def client(self: AwsClients, service: str) -> Any:
            fresh = service not in self._clients
            made = await original(self, service)
            if fresh and service == "dynamodb":
                made.meta.events.register("provide-client-params.dynamodb", meter._stash)
                made.meta.events.register("after-call.dynamodb", meter._after)
            return made

        AwsClients.client = client  # type: ignore[method-assign]
        try:
            yield
        finally:
            AwsClients.client = original  # type: ignore[method-assign]

    def _stash(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["capacity_params"] = params

    def _after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        self.observe(model.name, context.get("capacity_params", {}), parsed)
