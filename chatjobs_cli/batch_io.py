"""Batch helpers for `chatjobs`: the input file as NDJSON, a progress bar, the results stream."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TextIO

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from chatjobs_cli.exits import EXIT_USAGE, CliError
from chatjobs_cli.http import BATCH_DONE, checked

SUMMARY = "ok {succeeded} · failed {failed} · queued {queued} · running {running}"


def batch_lines(path: Path) -> bytes:
    """The file as NDJSON; a line may say just {"prompt": ...} and custom_id defaults to line-N."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(EXIT_USAGE, f"cannot read {path}: {exc}") from None
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as exc:
            raise CliError(EXIT_USAGE, f"{path}:{number}: not JSON ({exc})") from None
        if isinstance(item, dict) and "prompt" in item and "messages" not in item:
            item["messages"] = [{"role": "user", "content": item.pop("prompt")}]
        if isinstance(item, dict):
            item.setdefault("custom_id", f"line-{number}")
        out.append(json.dumps(item))
    return ("\n".join(out) + "\n").encode()


def follow_batch(
    http: httpx.Client, batch: dict[str, Any], poll_s: float, timeout_s: float | None, err: Console
) -> dict[str, Any]:
    """Show a progress bar until the batch ends or `timeout_s` passes; return its last state."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("{task.fields[rate]}/s"),
        TimeElapsedColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("batch", total=batch["counts"]["total"], counts="", rate="0.0")
        while True:
            counts = batch["counts"]
            done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
            elapsed = time.monotonic() - started
            rate = f"{done / max(elapsed, 1e-6):.1f}"
            bar.update(task, completed=done, counts=SUMMARY.format(**counts), rate=rate)
            if batch["status"] in BATCH_DONE or (timeout_s is not None and elapsed >= timeout_s):
                return batch
            time.sleep(poll_s)
            batch = checked(http.get(f"/v1/batches/{batch['id']}"))


def copy_results(http: httpx.Client, batch_id: str, out: Path | None) -> int:
    """Copy the batch's NDJSON results to `out` (stdout when None), line by line; return how
    many lines. The file is opened only once the API has answered 200."""
    with http.stream("GET", f"/v1/batches/{batch_id}/results") as response:
        if response.status_code >= 400:
            response.read()
            checked(response)
        with out.open("w") if out else nullcontext(sys.stdout) as sink:
            return _copy_lines(response.iter_lines(), sink)


def _copy_lines(lines: Iterator[str], sink: TextIO) -> int:
    written = 0
    for line in lines:
        if line.strip():
            sink.write(line + "\n")
            written += 1
    return written
