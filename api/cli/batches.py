"""Batch commands: batch (submit a JSONL file), results. Each returns its exit code."""

import json
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.markup import escape

from api.cli.batch_io import batch_lines, copy_results, follow_batch
from api.cli.exits import EXIT_JOB_FAILED, EXIT_OK, EXIT_STILL_RUNNING, EXIT_USAGE, CliError, err
from api.cli.http import BATCH_DONE, checked, target


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
