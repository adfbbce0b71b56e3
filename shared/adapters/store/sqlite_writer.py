"""GroupCommitWriter: SQLite writes of many concurrent callers committed together, durably.

One connection on a thread of its own does every write. Writes submitted while the previous
group is being committed wait and then go together, each in a SAVEPOINT of one `BEGIN IMMEDIATE`
transaction: one COMMIT and one thread hop for the whole group, instead of one of each per write.
A write that fails is rolled back alone; the others of its group commit. An error that ends the
transaction itself (SQLITE_FULL, an I/O error: SQLite rolls all of it back) fails every write of
the group with that error.

Durability is pipelined: the connection commits with `synchronous = NORMAL` (COMMIT writes the WAL
but does not fsync it), and a second thread fsyncs the WAL file, once for all the groups committed
while the previous fsync ran. A durable write's caller is answered only after an fsync that began
after its COMMIT returned: the guarantee of `synchronous = FULL`, while the next group is already
being written instead of waiting for the disk. `durable=False` answers at COMMIT (a claim: losing
it with the machine only means the job runs again). Other connections see a write from its COMMIT,
a moment before its fsync: what survives a process crash, but not yet a power cut; what a caller
is answered always has.

The SQL runs on the writer thread with the GIL released, so the event loop goes on meanwhile. At
low load a group is a single write and commits at once: nothing waits for company.
"""

from __future__ import annotations

import asyncio
import os
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
    def __init__(self, path: str, connect: Callable[[], sqlite3.Connection]) -> None:
        self.path = path
        self._connect = connect
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._sync_thread: ThreadPoolExecutor | None = None
        self._wal: int | None = None  # the WAL file, opened for fsync
        self._pending: list[_Write] = []
        self._unsynced: list[tuple[_Write, Any]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed
        self.syncs = 0  # WAL fsyncs

    async def start(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._sync_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-sync")
        self._db = await self._in_thread(self._open)

    def _open(self) -> sqlite3.Connection:
        db = self._connect()
        db.execute("PRAGMA synchronous = NORMAL")  # the fsyncs are _sync's
        self._wal = os.open(self.path + "-wal", os.O_RDONLY)  # WAL mode made it
        _fsync_directory(self.path)  # the WAL file's own name must survive a crash too
        return db

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._syncer is not None:  # started by the last groups, maybe
            await asyncio.gather(self._syncer, return_exceptions=True)
        if self._thread is None:
            return
        db, self._db = self._db, None
        if db is not None:
            await self._in_thread(db.close)
        if self._wal is not None:
            os.close(self._wal)
            self._wal = None
        for thread in (self._thread, self._sync_thread):
            if thread is not None:
                thread.shutdown(wait=True)
        self._thread = self._sync_thread = None

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
            try:
                outcomes = await self._in_thread(self._commit, [w.op for w in group])
            except Exception as exc:  # the transaction as a whole failed: so did each write
                outcomes = [(False, exc)] * len(group)
            except BaseException:  # cancelled (the loop is closing): nobody learns an outcome
                for write in group + self._pending:
                    write.done.cancel()
                raise
            self._settle(group, outcomes)

    def _settle(self, group: list[_Write], outcomes: list[tuple[bool, Any]]) -> None:
        """Answer failures and writes that need no fsync now, durable ones after the next."""
        for write, (ok, value) in zip(group, outcomes, strict=True):
            if ok and write.durable:
                self._unsynced.append((write, value))
            else:
                _answer([write], [(ok, value)])
        if self._unsynced and (self._syncer is None or self._syncer.done()):
            self._syncer = asyncio.create_task(self._sync_all(), name="sqlite-wal-sync")

    async def _sync_all(self) -> None:
        while self._unsynced:
            waiting, self._unsynced = self._unsynced, []  # all committed before this fsync began
            assert self._sync_thread is not None and self._wal is not None
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._sync_thread, _datasync, self._wal)
            except Exception as exc:  # committed, but not known to be on disk: a failure
                _answer([w for w, _ in waiting], [(False, exc)] * len(waiting))
                continue
            self.syncs += 1
            _answer([w for w, _ in waiting], [(True, value) for _, value in waiting])

    def _commit(self, ops: list[Op]) -> list[tuple[bool, Any]]:
        """In the writer thread: one transaction, a savepoint per write."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            outcomes = [_one(db, op, alone=len(ops) == 1) for op in ops]
            if len(ops) == 1 and not outcomes[0][0]:
                if db.in_transaction:  # unless the error rolled it back already
                    db.execute("ROLLBACK")
                return outcomes
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.commits += 1
        return outcomes

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock just now."""
    return "locked" in str(exc) or "busy" in str(exc)


def is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk, or the database's size limit (max_page_count), is full."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


def _datasync(fd: int) -> None:
    """What SQLite itself calls to sync its WAL where it can: the data, and the metadata needed
    to read it back (the size), without the rest of the inode."""
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _fsync_directory(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        if not db.in_transaction:  # SQLITE_FULL, an I/O error: SQLite rolled the group back
            raise
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
