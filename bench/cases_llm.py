"""Gemini's CPU a call: the worker's GeminiProvider (the google-genai SDK) against the same call
written by hand over aiohttp (the REST baseline in bench/llm_calls.py), same stub, same run."""

from __future__ import annotations

from statistics import median
from typing import Any

from bench.procs import run_json
from bench.report import Row
from bench.service import Run

CALLS = 3_000
IN_FLIGHT = 50  # the slow-LLM batch case's WORKER_CONCURRENCY
STUB_DELAY_S = 0.02
ROUNDS = 3  # interleaved, so a busy moment of the machine falls on both clients


def gemini_cpu_row(run: Run) -> Row:
    stub, url = run.stub_llm(STUB_DELAY_S)
    rounds: dict[str, list[dict[str, Any]]] = {"rest": [], "sdk": []}
    try:
        for _ in range(ROUNDS):
            for client, results in rounds.items():
                args = ["-m", "bench.llm_calls", url, client, str(CALLS), str(IN_FLIGHT)]
                results.append(run_json(args))
    finally:
        run.fleet.stop(stub)
    rest, sdk = (median(r["cpu_ms_per_call"] for r in rounds[c]) for c in ("rest", "sdk"))
    start = median(r["start_cpu_s"] for r in rounds["sdk"])
    return Row(
        f"Gemini call CPU, {IN_FLIGHT} in flight",
        f"{rest:.2f} ms REST over aiohttp",
        f"{sdk:.2f} ms google-genai (+{start:.1f} s CPU once: import, client)",
        sdk / rest,
        None,
        higher_is_better=False,
        details={"rounds": rounds, "stub_delay_s": STUB_DELAY_S},
    )
