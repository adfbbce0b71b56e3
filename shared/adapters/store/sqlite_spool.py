"""Rows of a big insert, built ahead of its transaction without being held in memory.

A 50,000-job batch is written in one transaction. Building its rows (a Job each, serialised) takes
seconds of CPU; doing that inside the transaction would hold the write lock, and every other
write, for all that time, and holding the rows in a list would cost about 50 MB. So the rows are
built first, outside the transaction, into a temporary file (marshal, a few microseconds a row to
read back), and the transaction only streams them into `executemany`.
"""

from __future__ import annotations

import marshal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")
IN_MEMORY_ROWS = 1_000  # a small batch's rows simply stay in a list


class RowSpool:
    def __init__(self, rows: list[tuple[Any, ...]] | None, file: IO[bytes] | None) -> None:
        self._rows, self._file = rows, file

    @classmethod
    def build(cls, items: Iterable[T], count: int, row: Callable[[T], tuple[Any, ...]]) -> RowSpool:
        """Rows for `count` items (in a thread: this is the CPU-heavy part)."""
        if count <= IN_MEMORY_ROWS:
            return cls([row(item) for item in items], None)
        file = tempfile.TemporaryFile()  # noqa: SIM115 - it outlives this call: close() closes it
        try:
            for item in items:
                marshal.dump(row(item), file)
        except BaseException:
            file.close()
            raise
        return cls(None, file)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        if self._rows is not None:
            yield from self._rows
            return
        assert self._file is not None
        self._file.seek(0)
        while True:
            try:
                yield marshal.load(self._file)
            except EOFError:
                return

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
