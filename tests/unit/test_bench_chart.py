"""The bench chart draws every row on its own line, with its goal on that line."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt

from bench.report import Row, chart


def rows() -> list[Row]:
    return [
        Row("first", "b", "p", 0.5, 1.0),
        Row("… shared label", "b", "p", 1.9, None),
        Row("second", "b", "p", 0.2, 2.0, higher_is_better=False),
        Row("… shared label", "b", "p", 1.93, None),
    ]


def centre(bar: Any) -> float:
    return float(bar.get_y() + bar.get_height() / 2)


def test_every_row_has_its_own_bar_and_label_even_with_a_repeated_label() -> None:
    figure = chart(rows())
    try:
        axes = figure.axes[0]
        bars = axes.patches
        assert [round(bar.get_width(), 2) for bar in bars] == [0.5, 1.9, 0.2, 1.93]
        assert len({centre(bar) for bar in bars}) == 4  # no two rows on one line
        labels = {tick.get_position()[1]: tick.get_text() for tick in axes.get_yticklabels()}
        assert [labels[centre(bar)] for bar in bars] == [row.case for row in rows()]
        assert centre(bars[0]) > centre(bars[-1])  # the table's first row on top
    finally:
        plt.close(figure)


def test_each_goal_tick_sits_on_its_rows_bar() -> None:
    figure = chart(rows())
    try:
        axes = figure.axes[0]
        ticks = [line for line in axes.get_lines() if line.get_linestyle() == "-"]
        goals = {float(line.get_xdata()[0]): sum(line.get_ydata()) / 2 for line in ticks}
        bars = axes.patches
        assert goals == {1.0: centre(bars[0]), 2.0: centre(bars[2])}
    finally:
        plt.close(figure)
