"""`chatjobs`: a command-line client for the REST API (submit, get, batch, webhook-secret)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

TERMINAL = {"succeeded", "failed", "cancelled"}
BATCH_DONE = {"completed", "cancelled"}
err = Console(stderr=True)


class CliError(Exception):
    pass


def client(args: argparse.Namespace) -> httpx.Client:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    return httpx.Client(base_url=args.base_url, headers=headers, timeout=60)


def checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:500]
        raise CliError(f"HTTP {response.status_code}: {message}")
    try:
        return response.json()
    except ValueError:
        raise CliError(f"HTTP {response.status_code}: the answer is not JSON") from None


def wait_job(http: httpx.Client, job_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = checked(http.get(f"/v1/jobs/{job_id}", params={"wait": 30}))
        if job["status"] in TERMINAL or time.monotonic() >= deadline:
            return job


def cmd_submit(args: argparse.Namespace) -> int:
    messages = [{"role": "system", "content": args.system}] if args.system else []
    messages.append({"role": "user", "content": args.prompt})
    body: dict[str, Any] = {"messages": messages}
    if args.model:
        body["model"] = args.model
    with client(args) as http:
        job = checked(http.post("/v1/jobs", json=body))
        if args.wait and job["status"] not in TERMINAL:
            job = wait_job(http, job["id"], args.timeout)
    return show_job(job, args.json)


def cmd_get(args: argparse.Namespace) -> int:
    with client(args) as http:
        job = checked(http.get(f"/v1/jobs/{args.job_id}", params={"wait": args.wait}))
    return show_job(job, True)


def show_job(job: dict[str, Any], as_json: bool) -> int:
    if as_json or job["status"] not in TERMINAL:
        print(json.dumps(job, indent=2))
    elif job["status"] == "succeeded":
        print(job["result"]["content"])
    else:
        error = escape(str(job.get("error")))
        err.print(f"[red]job {escape(job['id'])} {job['status']}[/red]: {error}")
    return 0 if job["status"] in {"succeeded", "queued", "running"} else 1


def batch_lines(path: Path) -> bytes:
    """The file as NDJSON; a line may say just {"prompt": ...} and custom_id defaults to line-N."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from None
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except ValueError as exc:
            raise CliError(f"{path}:{number}: not JSON ({exc})") from None
        if isinstance(item, dict) and "prompt" in item and "messages" not in item:
            item["messages"] = [{"role": "user", "content": item.pop("prompt")}]
        if isinstance(item, dict):
            item.setdefault("custom_id", f"line-{number}")
        out.append(json.dumps(item))
    return ("\n".join(out) + "\n").encode()


def cmd_batch(args: argparse.Namespace) -> int:
    content = batch_lines(Path(args.file))
    headers = {"Content-Type": "application/x-ndjson"}
    params = {"webhook_url": args.webhook_url} if args.webhook_url else {}
    with client(args) as http:
        batch = checked(http.post("/v1/batches", content=content, headers=headers, params=params))
        err.print(f"batch {escape(batch['id'])}: {batch['counts']['total']} requests")
        if args.wait:
            batch = follow_batch(http, batch, args.poll)
        if args.out:
            written = save_results(http, batch["id"], Path(args.out))
            err.print(f"wrote {written} results to {escape(args.out)}")
    if not args.wait and not args.out:
        print(json.dumps(batch, indent=2))
    counts = batch["counts"]
    return 1 if counts["failed"] else 0


def follow_batch(http: httpx.Client, batch: dict[str, Any], poll_s: float) -> dict[str, Any]:
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
            rate = done / max(time.monotonic() - started, 1e-6)
            summary = "ok {succeeded} · failed {failed} · queued {queued} · running {running}"
            bar.update(task, completed=done, counts=summary.format(**counts), rate=f"{rate:.1f}")
            if batch["status"] in BATCH_DONE:
                return batch
            time.sleep(poll_s)
            batch = checked(http.get(f"/v1/batches/{batch['id']}"))


def save_results(http: httpx.Client, batch_id: str, out: Path) -> int:
    written = 0
    with http.stream("GET", f"/v1/batches/{batch_id}/results") as response:
        if response.status_code >= 400:
            response.read()
            checked(response)
        with out.open("w") as sink:
            for line in response.iter_lines():
                if line.strip():
                    sink.write(line + "\n")
                    written += 1
    return written


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    with client(args) as http:
        print(checked(http.get("/v1/webhook-secret"))["secret"])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chatjobs", description=__doc__)
    p.add_argument("--base-url", default=os.environ.get("CHATJOBS_URL", "http://127.0.0.1:8000"))
    p.add_argument("--api-key", default=os.environ.get("CHATJOBS_API_KEY"))
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("submit", help="submit one prompt")
    s.add_argument("prompt")
    s.add_argument("--system")
    s.add_argument("--model")
    s.add_argument("--wait", action="store_true", help="wait for the answer and print it")
    s.add_argument("--timeout", type=float, default=300)
    s.add_argument("--json", action="store_true", help="print the whole job as JSON")
    s.set_defaults(func=cmd_submit)

    g = sub.add_parser("get", help="show a job")
    g.add_argument("job_id")
    g.add_argument("--wait", type=float, default=0, help="long-poll up to this many seconds")
    g.set_defaults(func=cmd_get)

    b = sub.add_parser("batch", help="submit a JSONL file of prompts as one batch")
    b.add_argument("file")
    b.add_argument("--wait", action="store_true", help="show progress until the batch ends")
    b.add_argument("--out", help="write the results (NDJSON) here")
    b.add_argument("--webhook-url")
    b.add_argument("--poll", type=float, default=1.0, help="seconds between progress polls")
    b.set_defaults(func=cmd_batch)

    w = sub.add_parser("webhook-secret", help="print this key's webhook signing secret")
    w.set_defaults(func=cmd_webhook_secret)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CliError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach {escape(args.base_url)}: {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
