"""OpenAI-format batch commands: openai-batch (upload a file in OpenAI's batch format, run it,
follow it, save its output and error files) and openai-file (save a file's content). The batch
is a native one too, so the progress bar is the `batch` command's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from chatjobs_cli.batch_io import follow_batch
from chatjobs_cli.exits import (
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_STILL_RUNNING,
    EXIT_USAGE,
    CliError,
    err,
)
from chatjobs_cli.http import BATCH_DONE, checked, target

OPENAI = "/openai/v1"
ENDPOINT = "/v1/chat/completions"


def openai_batch(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            help='OpenAI batch input (JSONL): {"custom_id", "method": "POST", "url": '
            '"/v1/chat/completions", "body": {...}} a line.'
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
        Path | None, typer.Option(help="With --wait: write the output file (answers) here.")
    ] = None,
    errors: Annotated[
        Path | None,
        typer.Option(help="With --wait: write the error file (failed, cancelled) here."),
    ] = None,
    poll: Annotated[float, typer.Option(min=0.05, help="Seconds between progress polls.")] = 1.0,
) -> int:
    """Upload an OpenAI-format batch file and run it (/openai/v1/files, /openai/v1/batches)."""
    with target(ctx).client() as http:
        file_id = _upload(http, file)
        batch = checked(
            http.post(
                f"{OPENAI}/batches",
                json={"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"},
            )
        )
        if batch["status"] == "failed":
            return _refused(batch)
        err.print(f"batch {escape(batch['id'])}: {batch['request_counts']['total']} requests")
        if not wait:
            print(json.dumps(batch, indent=2))
            return EXIT_OK
        native = follow_batch(http, checked(http.get(f"/v1/batches/{batch['id']}")), poll,
                              timeout, err)  # fmt: skip
        if native["status"] not in BATCH_DONE:
            err.print(f"batch {escape(batch['id'])} still {native['status']} after {timeout} s")
            return EXIT_STILL_RUNNING
        batch = checked(http.get(f"{OPENAI}/batches/{batch['id']}"))
        _save_file(http, batch.get("output_file_id"), out)
        _save_file(http, batch.get("error_file_id"), errors)
    print(json.dumps(batch, indent=2))
    return EXIT_JOB_FAILED if batch["error_file_id"] else EXIT_OK


def _upload(http: httpx.Client, file: Path) -> str:
    """The file sent as it is on disk, streamed (httpx reads a multipart file part in chunks)."""
    try:
        body = file.open("rb")
    except OSError as exc:
        raise CliError(EXIT_USAGE, f"cannot read {file}: {exc}") from None
    with body:
        parts = {"file": (file.name, body, "application/jsonl")}
        uploaded = checked(http.post(f"{OPENAI}/files", files=parts, data={"purpose": "batch"}))
    err.print(f"uploaded {escape(file.name)} as {escape(uploaded['id'])}")
    return str(uploaded["id"])


def _refused(batch: dict[str, Any]) -> int:
    for error in batch["errors"]["data"]:
        line = f"line {error['line']}: " if error.get("line") else ""
        err.print(f"{line}{escape(error['message'])} ({escape(error['code'])})")
    err.print(f"batch {escape(batch['id'])} failed: the input file was refused")
    return EXIT_USAGE


def _save_file(http: httpx.Client, file_id: str | None, out: Path | None) -> None:
    if not file_id or not out:
        return
    written = _download(http, file_id, out)
    err.print(f"wrote {written} bytes of {escape(file_id)} to {escape(str(out))}")


def _download(http: httpx.Client, file_id: str, out: Path) -> int:
    """Stream a file's content to `out`, opened only once the API has answered 200."""
    with http.stream("GET", f"{OPENAI}/files/{file_id}/content") as response:
        if response.status_code >= 400:
            response.read()
            checked(response)
        try:
            with out.open("wb") as sink:
                for chunk in response.iter_bytes():
                    sink.write(chunk)
        except OSError as exc:
            raise CliError(EXIT_USAGE, f"cannot write {out}: {exc}") from None
        return int(response.num_bytes_downloaded)


def openai_file(
    ctx: typer.Context,
    file_id: Annotated[str, typer.Argument(help="The file's id (file-...).")],
    out: Annotated[Path, typer.Option(help="Write the content here.")],
) -> int:
    """Save a file's content (an OpenAI batch's input, output or error file)."""
    with target(ctx).client() as http:
        written = _download(http, file_id, out)
    err.print(f"wrote {written} bytes to {escape(str(out))}")
    return EXIT_OK
