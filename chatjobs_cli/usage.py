"""The usage command: the key's usage per day, model or provider, as a table or as JSON."""

import json
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from chatjobs_cli.exits import EXIT_OK
from chatjobs_cli.http import checked, target

COLUMNS = (  # (field, heading); summed in the total row unless a latency
    ("requests", "requests"),
    ("succeeded", "succeeded"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("cache_hits", "cache hits"),
    ("coalesced", "coalesced"),
    ("llm_calls", "LLM calls"),
    ("fallbacks", "fallbacks"),
    ("input_tokens", "tokens in"),
    ("output_tokens", "tokens out"),
    ("latency_ms_p50", "p50 ms"),
    ("latency_ms_p95", "p95 ms"),
)


class GroupBy(StrEnum):
    day = "day"
    model = "model"
    provider = "provider"


def usage(
    ctx: typer.Context,
    start: Annotated[
        str | None,
        typer.Option("--from", help="First UTC day, YYYY-MM-DD (default: 6 days before --to)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last UTC day, included (default: today).")
    ] = None,
    group_by: Annotated[
        GroupBy, typer.Option("--group-by", help="One row per day, model or provider.")
    ] = GroupBy.day,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the API's answer as JSON.")
    ] = False,
) -> int:
    """Show your usage: requests, outcomes, cache hits (LLM calls saved), LLM calls, tokens,
    latency."""
    params = {"group_by": group_by.value, "from": start, "to": end}
    with target(ctx).client() as http:
        report = checked(http.get("/v1/usage", params={k: v for k, v in params.items() if v}))
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        show(usage_table(report))
    return EXIT_OK


def show(table: Table) -> None:
    """Print at the table's natural width: a narrow terminal wraps its lines rather than have
    rich cut headings and figures short."""
    console = Console()
    natural = Console(width=10_000).measure(table).maximum
    Console(width=max(console.width, natural)).print(table)


def usage_table(report: dict[str, Any]) -> Table:
    """One row per group and a total; cells are never cut short (headings wrap instead)."""
    rows: list[dict[str, Any]] = report["data"]
    cells = [
        ["-" if row.get(field) is None else f"{row[field]:,}" for field, _ in COLUMNS]
        for row in rows
    ]
    totals = [
        "" if field.startswith("latency") else f"{sum(row.get(field) or 0 for row in rows):,}"
        for field, _ in COLUMNS
    ]
    title = f"usage {report['from']} to {report['to']} by {report['group_by']}"
    caption = _failures(rows) if rows else "no usage in this period"
    table = Table(
        title=title,
        caption=caption or None,
        show_footer=bool(rows),
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1),  # columns two spaces apart
    )
    groups = [row["group"] for row in rows]
    table.add_column(report["group_by"], footer="total", no_wrap=True, min_width=_widest(groups))
    for n, (_, heading) in enumerate(COLUMNS):
        shown = [line[n] for line in cells] + [totals[n]]
        table.add_column(heading, footer=totals[n], justify="right", min_width=_widest(shown))
    for row, line in zip(rows, cells, strict=True):
        table.add_row(row["group"], *line)
    return table


def _widest(texts: list[str]) -> int:
    return max((len(text) for text in texts), default=1)


def _failures(rows: list[dict[str, Any]]) -> str:
    codes: dict[str, int] = {}
    for row in rows:
        for code, count in (row.get("failed_by_code") or {}).items():
            codes[code] = codes.get(code, 0) + count
    listed = ", ".join(f"{code} {count:,}" for code, count in sorted(codes.items()))
    return f"failed by code: {listed}" if listed else ""
