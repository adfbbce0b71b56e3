"""Batch commands: batch (submit a JSONL file), batches (list), results, retry-failed. Each
returns its exit code."""

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from chatjobs_cli.batch_io import batch_lines, copy_results, follow_batch
from chatjobs_cli.exits import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_STILL_RUNNING,
    EXIT_USAGE,
    CliError,
    err,
)
from chatjobs_cli.http import BATCH_DONE, checked, print_listing, target


def submit_batch(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help='JSONL file: one request a line; {"prompt": "..."} is enough, custom_id '
            "defaults to line-N."
        ),
    ],
    wait: Annotated[
        bool, typer.Option("--wait", help="Show a progress bar until the batch ends.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(min=0, help="With --wait: give up after this many seconds (exit 5)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the results (NDJSON) to this file.")
    ] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Where the batch.completed webhook is sent.")
    ] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between progress polls.")] = 1.0,
) -> int:
    """Submit a JSONL file of prompts as one batch."""
    content = batch_lines(file)
    headers = {"Content-Type": "application/x-ndjson"}
    params = {"webhook_url": webhook_url} if webhook_url else {}
    with target(ctx).client() as http:
        batch = checked(http.post("/v1/batches", content=content, headers=headers, params=params))
        err.print(f"batch {escape(batch['id'])}: {batch['counts']['total']} requests")
        if wait:
            batch = follow_batch(http, batch, poll, timeout, err)
        if out:
            _save(http, batch["id"], out)
    if not wait and not out:
        print(json.dumps(batch, indent=2))
    if wait and batch["status"] not in BATCH_DONE:
        err.print(f"batch {escape(batch['id'])} still {batch['status']} after {timeout} s")
        return EXIT_STILL_RUNNING
    return EXIT_JOB_FAILED if batch["counts"]["failed"] else EXIT_OK


def results(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The batch's id (batch_...).")],
    out: Annotated[
        Path | None, typer.Option(help="Write the NDJSON here instead of to stdout.")
    ] = None,
) -> int:
    """Print a batch's results as NDJSON: one line per request, in submission order."""
    with target(ctx).client() as http:
        _save(http, batch_id, out)
    return EXIT_OK


def _save(http: httpx.Client, batch_id: str, out: Path | None) -> None:
    try:
        written = copy_results(http, batch_id, out)
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot write {out}: {exc}") from None
    if out:
        err.print(f"wrote {written} results to {escape(str(out))}")


def list_batches(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Batches per page.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Start at this page (a next_cursor printed before).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Follow the cursors and list every page.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One batch per line as JSON.")] = False,
) -> int:
    """List your batches, newest first (one page, or every page with --all)."""
    params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
    print_listing(ctx, params, path="/v1/batches", header=BATCH_HEADER, row=batch_row,
                  every=every, as_json=as_json)  # fmt: skip
    return EXIT_OK


BATCH_HEADER = f"{'ID':<38}  {'STATUS':<11}  {'CREATED':<32}  {'DONE':>11}  FAILED"


def batch_row(batch: dict[str, Any]) -> str:
    counts = batch["counts"]
    done = f"{counts['succeeded'] + counts['failed'] + counts['cancelled']}/{counts['total']}"
    status, created = batch["status"], batch["created_at"]
    return f"{batch['id']:<38}  {status:<11}  {created:<32}  {done:>11}  {counts['failed']}"


def retry_failed(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="The batch's id (batch_...).")],
) -> int:
    """Run a batch's failed jobs again; prints the batch (unchanged if none had failed)."""
    with target(ctx).client() as http:
        print(json.dumps(checked(http.post(f"/v1/batches/{batch_id}/retry-failed")), indent=2))
    return EXIT_OK
