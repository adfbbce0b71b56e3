"""GroupCommitWriter: SQLite writes of many concurrent callers committed together.

One connection on one thread of its own does every write. Writes submitted while the previous
group is being committed wait and then go together, each in a SAVEPOINT of one `BEGIN IMMEDIATE`
transaction: one COMMIT (one WAL fsync) and one thread hop for the whole group, instead of one of
each per write. A write that fails is rolled back alone; the others of its group commit. Every
caller is answered only after the COMMIT that holds its write returned, so an answer sent after
`await writer.run(...)` reports durable state: a group holding a durable write commits with
`synchronous = FULL` (the WAL is fsynced before COMMIT returns). A group of writes that need not
survive a power cut (`durable=False`: a claim, whose loss only means the job runs again) commits
with `synchronous = NORMAL`, without an fsync of its own; the next durable commit's fsync covers
it.

The SQL runs on that thread with the GIL released, so the event loop goes on meanwhile (on
another core, where there is one). At low load a group is a single write and commits at once:
nothing waits for company.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

MAX_GROUP = 256  # bounds one transaction's length, so a single write never waits behind too many


@dataclass
class _Write:
    op: Op
    done: asyncio.Future[Any]
    durable: bool


class GroupCommitWriter:
    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._pending: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._synchronous = ""
        self.commits = 0  # transactions committed
        self.synced_commits = 0  # of which with an fsync

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._db = await self._in_thread(lambda: self._connect())

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._thread is None:
            return
        db, self._db = self._db, None
        if db is not None:
            await self._in_thread(db.close)
        self._thread.shutdown(wait=True)
        self._thread = None

    async def run(self, op: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run `op(connection)` inside a write transaction; its result once that committed."""
        if self._db is None:
            raise RuntimeError("SqliteJobStore.start() has not been called")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Write(op, done, durable))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="sqlite-group-commit")
        return await done

    async def _flush(self) -> None:
        while self._pending:
            group, self._pending = self._pending[:MAX_GROUP], self._pending[MAX_GROUP:]
            durable = any(write.durable for write in group)
            try:
                outcomes = await self._in_thread(self._commit, [w.op for w in group], durable)
            except Exception as exc:  # the transaction as a whole failed: so did each write
                outcomes = [(False, exc)] * len(group)
            except BaseException:  # cancelled (the loop is closing): nobody learns an outcome
                for write in group + self._pending:
                    write.done.cancel()
                raise
            _answer(group, outcomes)

    def _commit(self, ops: list[Op], durable: bool) -> list[tuple[bool, Any]]:
        """In the writer thread: one transaction, a savepoint per write."""
        db = self._db
        assert db is not None
        self._set_synchronous(db, "FULL" if durable else "NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [_one(db, op, alone=len(ops) == 1) for op in ops]
            if len(ops) == 1 and not outcomes[0][0]:
                db.execute("ROLLBACK")
                return outcomes
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.commits += 1
        self.synced_commits += durable
        return outcomes

    def _set_synchronous(self, db: sqlite3.Connection, level: str) -> None:
        if level != self._synchronous:
            db.execute(f"PRAGMA synchronous = {level}")
            self._synchronous = level

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock just now."""
    return "locked" in str(exc) or "busy" in str(exc)


def _one(db: sqlite3.Connection, op: Op, *, alone: bool) -> tuple[bool, Any]:
    if alone:  # its own transaction: a failure rolls all of it back
        try:
            return True, op(db)
        except Exception as exc:
            return False, exc
    db.execute("SAVEPOINT write")
    try:
        value = op(db)
    except Exception as exc:
        db.execute("ROLLBACK TO write")
        db.execute("RELEASE write")
        return False, exc
    db.execute("RELEASE write")
    return True, value


def _answer(group: list[_Write], outcomes: list[tuple[bool, Any]]) -> None:
    for write, (ok, value) in zip(group, outcomes, strict=True):
        if write.done.done():  # its caller stopped waiting (cancelled); the write stands regardless
            continue
        if ok:
            write.done.set_result(value)
        else:
            write.done.set_exception(value)
