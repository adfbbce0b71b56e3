"""Patches to moto, for the local emulator only (`shared.adapters.aws.emulator.moto_server`,
which `make aws-local` and the tests run). The service never imports this module.

moto has no extension point for any of these; each replaces one moto function or property, keeps
its results, and is applied once per process by `apply()`. moto is pinned in uv.lock, and
tests/integration/test_aws_emulator.py checks what they promise.

DynamoDB
- `transact_write_items`: to make a transaction undoable, moto deep-copies every table it names,
  once per item. Time and memory grow with the table (a 3,000-job batch made gigabytes of copies,
  and a copy restored after a cancelled transaction wiped other requests' writes). Here a
  transaction saves just the items it names and puts those back when it fails. That undoes the
  same writes only because the emulator runs DynamoDB requests one at a time (SerialDynamoDB).
- `Table.all_items`: every Query first sorts the whole table, comparing DynamoTypes (a cast per
  comparison): 160 ms a query at 8,000 items. Sorting by the same values computed once per item
  gives the same order in a seventh of the time.

SQS (every message sent or received recomputed the queue's attributes, and their approximate
counts read the clock twice per queued message: with 3,000 messages queued a SendMessageBatch
took seconds, so the API's 5 s deadline refused a 3,000-line batch)
- the SQS module's clock: moto reads the time through datetime arithmetic (tens of microseconds);
  here through `time.time()`, the same value.
- `is_message_valid_based_on_retention_period`: reads the retention period directly instead of
  computing every attribute three times.
- `send_message`: moto computes all attributes to read ContentBasedDeduplication; within it the
  approximate counts read 0 (GetQueueAttributes still counts).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.dynamodb import models as dynamodb
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.sqs import models as sqs

SQS_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)

_applied = threading.Lock()
_done: list[bool] = []
_sending = threading.local()


def apply() -> None:
    with _applied:
        if _done:
            return
        _transactions_undo_only_their_items()
        Table.all_items = _all_items  # type: ignore[method-assign,assignment]
        sqs.unix_time, sqs.unix_time_millis = _unix_time, _unix_time_millis  # type: ignore[attr-defined]
        sqs.SQSBackend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign,assignment]
        _sends_skip_the_counts()
        _done.append(True)


# --- DynamoDB ------------------------------------------------------------------------------------


def _transactions_undo_only_their_items() -> None:
    transact = dynamodb.DynamoDBBackend.transact_write_items

    def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = [_saved_item(backend, entry) for entry in transact_items]
        try:
            with _tables_not_copied():
                transact(backend, transact_items)
        except Exception:
            for put_back in reversed(saved):
                put_back()
            raise

    dynamodb.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign,assignment]


class _TablesKept:
    """What moto's models module calls `copy`, during a transaction: a table "copy" is the table
    itself (so moto's own rollback changes nothing), every other value is copied."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


@contextmanager
def _tables_not_copied() -> Iterator[None]:
    dynamodb.copy = _TablesKept  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        dynamodb.copy = copy  # type: ignore[attr-defined]


def _saved_item(backend: Any, entry: dict[str, Any]) -> Callable[[], None]:
    """A function that puts back the item a transaction's `entry` names, as it is now."""
    op = next(iter(entry.values()))
    table = backend.tables.get(op.get("TableName"))
    key = op.get("Key") or op.get("Item") or {}
    if table is None or table.hash_key_attr not in key:
        return lambda: None  # moto refuses the transaction itself
    if table.range_key_attr and table.range_key_attr not in key:
        return lambda: None
    hash_key = DynamoType(key[table.hash_key_attr])
    range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    item = copy.deepcopy(table.get_item(hash_key, range_key))

    def put_back() -> None:
        table.delete_item(hash_key, range_key)
        if item is not None:
            table.put_item(item.to_json()["Attributes"], overwrite=True)

    return put_back


def _all_items(table: Any) -> list[Any]:
    if table.range_key_attr:
        items = [item for by_range in table.items.values() for item in by_range.values()]
    else:
        items = list(table.items.values())
    return sorted(items, key=_item_order)


def _item_order(item: Any) -> Any:
    """moto's order, `(hash_key, range_key) if range_key else hash_key`, on plain values."""
    hash_key = _plain(item.hash_key)
    return (hash_key, _plain(item.range_key)) if item.range_key is not None else hash_key


def _plain(key: Any) -> Any:
    return key.value if key.type == "S" else key.cast_value  # what DynamoType compares


# --- SQS -----------------------------------------------------------------------------------------


def _unix_time(dt: Any = None) -> float:
    if dt is not None:  # moto's SQS always asks for now; anything else goes to moto's own
        return float(_moto_unix_time(dt))
    return time.time()


def _unix_time_millis(dt: Any = None) -> float:
    return _unix_time(dt) * 1000.0


_moto_unix_time = sqs.unix_time  # type: ignore[attr-defined]


def _retained(backend: Any, queue_name: str, message: Any) -> bool:
    retention_s = backend.get_queue(queue_name).message_retention_period
    return bool(retention_s + message.sent_timestamp / 1000 > time.time())


def _sends_skip_the_counts() -> None:
    send = sqs.SQSBackend.send_message

    def send_message(backend: Any, *args: Any, **kwargs: Any) -> Any:
        _sending.now = True
        try:
            return send(backend, *args, **kwargs)
        finally:
            _sending.now = False

    for name in SQS_COUNTS:
        setattr(sqs.Queue, name, _unless_sending(getattr(sqs.Queue, name).fget))
    sqs.SQSBackend.send_message = send_message  # type: ignore[method-assign,assignment]


def _unless_sending(count: Callable[[Any], int]) -> property:
    return property(lambda queue: 0 if getattr(_sending, "now", False) else count(queue))
