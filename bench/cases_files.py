"""API memory growth (peak RSS over the RSS before) while it takes a 50,000-line (about 100 MB)
OpenAI batch file on POST /openai/v1/files: the upload is spooled to disk and copied to
FILES_DIR in chunks, so the API should hold a few megabytes of it, never the file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.cases_memory import GOAL_MIB, Peak
from bench.procs import reset_peak_rss, rss_kib
from bench.report import Row
from bench.service import AUTH, Run, cpu_window

LINES = 50_000
PADDING = 1_900  # characters of prompt a line: about 2 KB a line, 100 MB a file


def write_batch_file(path: Path) -> int:
    """The file, written a line at a time (the bench process does not hold it either)."""
    with path.open("w") as out:
        for n in range(LINES):
            body = {
                "model": "gemini-2.5-flash",
                "messages": [{"role": "user", "content": f"prompt {n} " + "x" * PADDING}],
            }
            line = {"custom_id": f"c{n}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")
    return path.stat().st_size


def upload_row(run: Run) -> Row:
    source = run.scratch / "openai-batch.jsonl"
    size = write_batch_file(source)
    api = run.api("api-files", FILES_DIR=str(run.scratch / "files"))
    pid = api.proc.popen.pid
    try:
        with api.http() as http:
            http.get("/openai/v1/files", headers=AUTH)  # warm: first request's imports
            time.sleep(0.5)
            before = rss_kib(pid)
            peak = Peak(pid, exact=reset_peak_rss(pid))
            with cpu_window(api=api.proc) as cpu, source.open("rb") as body:
                started = time.perf_counter()
                answer = http.post(
                    "/openai/v1/files",
                    files={"file": (source.name, body, "application/jsonl")},
                    data={"purpose": "batch"},
                )
                took = time.perf_counter() - started
            highest = peak.stop()
    finally:
        run.fleet.stop(api.proc)
        source.unlink()
    assert answer.status_code == 200, answer.text
    assert answer.json()["bytes"] == size
    growth_mib = (highest - before) / 1024
    return Row(
        f"API memory growth taking a {LINES:,}-line, {size / 1e6:.0f} MB OpenAI batch file",
        f"{GOAL_MIB:.0f} MiB budget",
        f"{growth_mib:,.0f} MiB (in {took:.1f} s)",
        growth_mib / GOAL_MIB,
        1.0,
        higher_is_better=False,
        cpu=cpu.share(),
        details={
            "rss_before_kib": before,
            "rss_peak_kib": highest,
            "upload_s": took,
            "file_bytes": size,
        },
    )
