"""Job commands: submit, get, list, cancel, delete. Each returns its exit code; errors raise
CliError."""

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape

from chatjobs_cli.exits import EXIT_JOB_FAILED, EXIT_OK, EXIT_STILL_RUNNING, err
from chatjobs_cli.http import TERMINAL, checked, print_listing, target, wait_job


class Status(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


def submit(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Argument(help="The user message.")],
    system: Annotated[str | None, typer.Option(help="A system message sent first.")] = None,
    model: Annotated[str | None, typer.Option(help="Model name; default: the server's.")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the answer and print it (see --timeout).")
    ] = False,
    timeout: Annotated[
        float, typer.Option(min=0, help="With --wait: give up after this many seconds (exit 5).")
    ] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole job as JSON.")] = False,
) -> int:
    """Submit one prompt as a job."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    body: dict[str, Any] = {"messages": messages}
    if model:
        body["model"] = model
    with target(ctx).client() as http:
        job = checked(http.post("/v1/jobs", json=body))
        if wait and job["status"] not in TERMINAL:
            job = wait_job(http, job["id"], timeout)
    return show_job(job, as_json, waited=wait)


def get(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id (job_...).")],
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            max=30,
            help="Long-poll up to this many seconds for the job to finish (exit 5 if it has not).",
        ),
    ] = 0,
) -> int:
    """Show a job as JSON."""
    with target(ctx).client() as http:
        job = checked(http.get(f"/v1/jobs/{job_id}", params={"wait": wait}))
    return show_job(job, True, waited=wait > 0)


def show_job(job: dict[str, Any], as_json: bool, waited: bool) -> int:
    status = job["status"]
    if as_json or status not in TERMINAL:
        print(json.dumps(job, indent=2))
    elif status == "succeeded":
        print(job["result"]["content"])
    else:
        error = escape(str(job.get("error")))
        err.print(f"[red]job {escape(job['id'])} {status}[/red]: {error}")
    if status in TERMINAL:
        return EXIT_OK if status == "succeeded" else EXIT_JOB_FAILED
    return EXIT_STILL_RUNNING if waited else EXIT_OK


def list_jobs(
    ctx: typer.Context,
    status: Annotated[Status | None, typer.Option(help="Only jobs in this status.")] = None,
    batch: Annotated[str | None, typer.Option(help="Only the jobs of this batch id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100, help="Jobs per page.")] = 20,
    cursor: Annotated[
        str | None, typer.Option(help="Start at this page (a next_cursor printed before).")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Follow the cursors and list every page.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One job per line as JSON.")] = False,
) -> int:
    """List your jobs, newest first (one page, or every page with --all)."""
    params: dict[str, Any] = {"limit": limit}
    params |= {
        k: v for k, v in {"status": status, "batch_id": batch, "cursor": cursor}.items() if v
    }
    print_listing(ctx, params, path="/v1/jobs", header=HEADER, row=job_row, every=every,
                  as_json=as_json)  # fmt: skip
    return EXIT_OK


HEADER = f"{'ID':<36}  {'STATUS':<9}  {'CREATED':<32}  {'BATCH':<38}  CUSTOM_ID"


def job_row(job: dict[str, Any]) -> str:
    batch, custom_id = job.get("batch_id") or "-", job.get("custom_id") or "-"
    return f"{job['id']:<36}  {job['status']:<9}  {job['created_at']:<32}  {batch:<38}  {custom_id}"


def cancel(
    ctx: typer.Context,
    subject_id: Annotated[
        str, typer.Argument(metavar="ID", help="A job id, or with --batch a batch id.")
    ],
    batch: Annotated[
        bool, typer.Option("--batch", help="ID is a batch: cancel its queued jobs.")
    ] = False,
) -> int:
    """Cancel a queued job (a running or finished one answers 409: exit 3), or a batch."""
    path = f"/v1/batches/{subject_id}/cancel" if batch else f"/v1/jobs/{subject_id}/cancel"
    with target(ctx).client() as http:
        print(json.dumps(checked(http.post(path)), indent=2))
    return EXIT_OK


def delete(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job's id (job_...).")],
) -> int:
    """Erase a finished job and its result (a queued job must be cancelled first: exit 3)."""
    with target(ctx).client() as http:
        response = http.delete(f"/v1/jobs/{job_id}")
    if response.status_code >= 400:
        checked(response)  # raises with the API's message
    err.print(f"deleted {escape(job_id)}")
    return EXIT_OK
