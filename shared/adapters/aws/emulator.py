"""moto's server as the local AWS emulator of `make aws-local` and the tests. Never imported by
the service itself: production talks to AWS.

moto's server differs from DynamoDB in two ways this service trips over:

1. It serves each request on its own thread, and its DynamoDB backend takes no lock. DynamoDB
   applies every request atomically; moto lets them interleave, and a TransactWriteItems that is
   cancelled puts back a copy of the whole table taken when it started, wiping what other
   requests wrote meanwhile (batch counters came out wrong). `SerialDynamoDB`, a WSGI middleware
   around moto's application, runs DynamoDB requests one at a time; SQS (its long polls), Secrets
   Manager and the rest stay concurrent.
2. To make a TransactWriteItems undoable, moto deep-copies each table it names, once per item:
   time and memory grow with the table (a 3,000-job batch took minutes per few hundred jobs and
   gigabytes of transient copies). moto has no hook for this, so `_undo_only_named_items` patches
   `DynamoDBBackend.transact_write_items` in this process: a transaction saves just the items it
   names and puts those back when it fails. That undoes the same writes because, with 1., no
   other request writes meanwhile. It is applied only by `moto_server()`, so only where this
   emulator runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

DYNAMODB_TARGET = "DynamoDB"  # X-Amz-Target: DynamoDB_20120810.<Operation>

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialDynamoDB:
    """WSGI middleware: DynamoDB requests one at a time (the whole request, answer included)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET):
            return self.app(environ, start_response)
        with self._lock:
            answer = self.app(environ, start_response)
            try:
                return [b"".join(answer)]
            finally:
                close = getattr(answer, "close", None)
                if close is not None:
                    close()


@contextmanager
def moto_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's server (every service) on `host:port` (0: a free port), DynamoDB made atomic as
    above, in threads of this process; yields its endpoint URL. The state lives as long as this
    process and the context do."""
    import logging

    # The WSGI application that `moto_server` and ThreadedMotoServer both serve, served here
    # the same way (werkzeug, a thread per request) inside SerialDynamoDB.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
    _undo_only_named_items()
    app = SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="moto", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


_patched = threading.Lock()


def _undo_only_named_items() -> None:
    """See the module's docstring, point 2. Idempotent."""
    from moto.dynamodb import models

    with _patched:
        transact = models.DynamoDBBackend.transact_write_items
        if getattr(transact, "undoes_only_named_items", False):
            return

        def transact_write_items(backend: Any, transact_items: list[dict[str, Any]]) -> None:
            saved = [_saved_item(backend, entry) for entry in transact_items]
            try:
                with _tables_not_copied(models):
                    transact(backend, transact_items)
            except Exception:
                for put_back in reversed(saved):
                    put_back()
                raise

        transact_write_items.undoes_only_named_items = True  # type: ignore[attr-defined]
        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign,assignment]


@contextmanager
def _tables_not_copied(models: Any) -> Iterator[None]:
    """Within the transaction, moto's `copy.deepcopy(table)` hands back the table itself, so its
    own rollback (putting those "copies" back) changes nothing; every other value is copied."""
    from moto.dynamodb.models.table import Table

    real_copy = models.copy

    class TablesKept:
        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else real_copy.deepcopy(value, memo)

    models.copy = TablesKept
    try:
        yield
    finally:
        models.copy = real_copy


def _saved_item(backend: Any, entry: dict[str, Any]) -> Callable[[], None]:
    """A function that puts back the item `entry` of a transaction names, as it is now."""
    import copy

    from moto.dynamodb.models.dynamo_type import DynamoType

    op = next(iter(entry.values()))
    table = backend.tables.get(op.get("TableName"))
    key = op.get("Key") or op.get("Item") or {}
    if table is None or table.hash_key_attr not in key:
        return lambda: None  # moto refuses the transaction itself
    hash_key = DynamoType(key[table.hash_key_attr])
    range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
    if table.range_key_attr and range_key is None:
        return lambda: None
    item = copy.deepcopy(table.get_item(hash_key, range_key))

    def put_back() -> None:
        table.delete_item(hash_key, range_key)
        if item is not None:
            table.put_item(item.to_json()["Attributes"], overwrite=True)

    return put_back
