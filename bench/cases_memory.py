"""API memory growth (peak RSS over the RSS before) while it accepts a 50,000-request batch."""

from __future__ import annotations

import json
import threading
import time

from bench.procs import reset_peak_rss, rss_kib
from bench.report import Row
from bench.service import JSON, Run, cpu_window

LINES = 50_000
GOAL_MIB = 50.0


def ndjson(count: int) -> bytes:
    lines = (
        json.dumps({"custom_id": f"c{n}", "messages": [{"role": "user", "content": f"prompt {n}"}]})
        for n in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


def memory_row(run: Run) -> Row:
    body = ndjson(LINES)
    api = run.api("api-memory")
    pid = api.proc.popen.pid
    try:
        with api.http() as http:
            http.get("/v1/jobs")  # warm: first request's imports and caches
            time.sleep(0.5)
            before = rss_kib(pid)
            peak = Peak(pid, exact=reset_peak_rss(pid))
            with cpu_window(api=api.proc) as cpu:
                started = time.perf_counter()
                headers = {**JSON, "Content-Type": "application/x-ndjson"}
                answer = http.post("/v1/batches", content=body, headers=headers)
                accepted = time.perf_counter() - started
            highest = peak.stop()
    finally:
        run.fleet.stop(api.proc)
    assert answer.status_code == 202, answer.text
    growth_mib = (highest - before) / 1024
    return Row(
        f"API memory growth accepting a {LINES:,}-line batch",
        f"{GOAL_MIB:.0f} MiB budget",
        f"{growth_mib:,.0f} MiB (in {accepted:.1f} s)",
        growth_mib / GOAL_MIB,
        1.0,
        higher_is_better=False,
        cpu=cpu.share(),
        details={
            "rss_before_kib": before,
            "rss_peak_kib": highest,
            "accept_s": accepted,
            "body_bytes": len(body),
        },
    )


class Peak:
    """The highest RSS while the request runs: VmHWM where it can be reset, else sampled."""

    def __init__(self, pid: int, exact: bool) -> None:
        self.pid, self.exact, self.highest = pid, exact, rss_kib(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.005):
            self.highest = max(self.highest, rss_kib(self.pid))

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        if self.exact:
            return max(self.highest, rss_kib(self.pid, "VmHWM"))
        return self.highest
