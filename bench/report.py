"""What a case reports, and how the run is shown: a rich table, bench/results.json, a PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
CHART = ROOT / "docs" / "asset" / "performance.png"


@dataclass
class Row:
    """One line of the table: the project's figure against its baseline's.

    `higher_is_better`: throughput (ratio = project / baseline should reach `goal`) or latency and
    memory (the ratio should stay at or under `goal`)."""

    case: str
    baseline: str
    project: str
    ratio: float
    goal: float | None  # None: shown for information, no goal
    higher_is_better: bool = True
    cpu: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        if math.isnan(self.ratio):
            return False
        return self.ratio >= self.goal if self.higher_is_better else self.ratio <= self.goal

    @property
    def goal_text(self) -> str:
        if self.goal is None:
            return "—"
        return f"{'≥' if self.higher_is_better else '≤'} {self.goal:g}×"


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if "model name" in line),
        platform.processor(),
    )
    load = os.getloadavg()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_before": [round(x, 2) for x in load],
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def busiest(cpu: dict[str, float]) -> str:
    if not cpu:
        return ""
    name = max(cpu, key=lambda k: cpu[k])
    return f"{name} {cpu[name]:.0%}"


def print_table(rows: list[Row], console: Console | None = None) -> None:
    table = Table(title="chatjobs vs its baselines (same machine, same run)")
    for column in ("case", "baseline", "chatjobs", "ratio", "goal", "met", "busiest process"):
        table.add_column(column)
    for row in rows:
        mark = {True: "[green]yes[/]", False: "[red]no[/]", None: "—"}[row.met]
        ratio = f"{row.ratio:.2f}×"
        table.add_row(
            row.case, row.baseline, row.project, ratio, row.goal_text, mark, busiest(row.cpu)
        )
    (console or Console()).print(table)


def write_results(rows: list[Row], info: dict[str, Any], path: Path = RESULTS) -> None:
    document = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "cases": [asdict(row) | {"met": row.met, "goal_text": row.goal_text} for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def partial_results(only: list[str]) -> Path:
    """Where a run of some cases only is written, so the full run's figures stay whole."""
    return RESULTS.with_name(f"results-{'-'.join(sorted(only))}.json")


def read_results(path: Path = RESULTS) -> list[Row]:
    """The rows a run wrote (to redraw its chart without running it again)."""
    fields = set(Row.__dataclass_fields__)
    cases = json.loads(path.read_text())["cases"]
    return [Row(**{k: v for k, v in case.items() if k in fields}) for case in cases]


def draw_chart(rows: list[Row], path: Path = CHART) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = chart(rows)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart(rows: list[Row]) -> Any:
    """The ratios as horizontal bars, top to bottom in the table's order, with each goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.5))
    # one position a row, top to bottom: rows may share a label ("… A's batch normal too" is in
    # both layouts' priority cases), and a categorical axis would draw them on one line
    positions = list(range(len(rows)))[::-1]
    ratios = [row.ratio for row in rows]
    colours = {True: "tab:green", False: "tab:red", None: "tab:gray"}
    bars = ax.barh(positions, ratios, color=[colours[row.met] for row in rows])
    ax.set_yticks(positions, [row.case for row in rows])
    for y, row in zip(positions, rows, strict=True):
        if row.goal is not None:
            ax.plot([row.goal, row.goal], [y - 0.4, y + 0.4], color="black", linewidth=2)
    for bar, ratio in zip(bars, ratios, strict=True):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {ratio:.2f}×", va="center")
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(
        "chatjobs ÷ baseline, log scale\n"
        "(black tick: goal; green: met, red: not met, grey: no goal)"
    )
    ax.set_title("chatjobs against its baselines")
    fig.tight_layout()
    return fig
