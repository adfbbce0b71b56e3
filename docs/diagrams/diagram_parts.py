"""What every diagram draws with: `Component` (the data a test checks against the code) and
`canvas`/`node`/`edge` (the drawing, with the `diagrams` package, imported only when drawing).

A Component names one thing in the code: its `kind` says where `ref` is looked up.
- "code": `package.module` or `package.module:Name.attr`; the label shows `Name.attr` (or the
  module's last part), so the drawn name is the code's name.
- "terraform": a resource address `aws_type.name` in infra/terraform.
- "env": a setting's environment variable (a field of shared.config.Settings), shown in the label.
- "compose": a service of docker-compose.yml.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["code", "terraform", "env", "compose"]

# Box styles for things without an icon (fill, border style).
STYLES = {
    "code": ("#E8F1FB", "rounded,filled"),
    "port": ("#FFF6D5", "rounded,filled,dashed"),
    "step": ("#F4F4F4", "rounded,filled"),
    "fast": ("#D8F5D0", "rounded,filled,bold"),
}
FAST_PATH = "#2E8B2E"  # the green cache-hit path
FALLBACK = "#C0392B"
ASYNC = "#7B8894"


@dataclass(frozen=True)
class Component:
    """One drawn thing: its label, where its name lives in the code, and how it looks (a box
    style from STYLES, or an icon class `diagrams.aws.compute.Lambda`)."""

    label: str
    kind: Kind
    ref: str
    look: str = "code"

    @property
    def name(self) -> str:
        """The code name a "code" component's label shows: `SqliteJobStore` for
        `shared.adapters.store.sqlite:SqliteJobStore`, `ChatService.submit` for
        `shared.service:ChatService.submit`, `sqs_poller` for `worker.sqs_poller`."""
        module, _, qualname = self.ref.partition(":")
        return qualname or module.rpartition(".")[2]

    @property
    def node_id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "_", f"{self.kind} {self.ref} {self.label}".lower())


DRAWN: list[Component] = []  # every component drawn since the last canvas() began


@contextmanager
def canvas(
    title: str, path: Path, *, render: bool = True, direction: str = "LR", **graph: str
) -> Iterator[None]:
    """A diagram written to `path` + ".png" on exit (only the graph, no file, when not `render`)."""
    from diagrams import Diagram, setdiagram

    DRAWN.clear()
    attrs = {"fontsize": "22", "pad": "0.6", "nodesep": "0.5", "ranksep": "0.9", **graph}
    diagram = Diagram(title, filename=str(path), direction=direction, show=False, graph_attr=attrs)
    diagram.__enter__()
    try:
        yield
    finally:
        if render:
            diagram.__exit__(None, None, None)
        else:
            setdiagram(None)


@contextmanager
def group(label: str, color: str = "#F7F9FB", **attrs: str) -> Iterator[None]:
    from diagrams import Cluster

    with Cluster(label, graph_attr={"bgcolor": color, "fontsize": "15", **attrs}):
        yield


def node(component: Component, **attrs: str) -> Any:
    """Draw `component`: an icon (look = a diagrams class path) or a styled box."""
    DRAWN.append(component)
    if component.look in STYLES:
        from diagrams import Node

        fill, style = STYLES[component.look]
        box = {
            **{"shape": "box", "style": style, "fillcolor": fill, "fixedsize": "false"},
            **{"width": "1.9", "height": "0.7", "margin": "0.15,0.08", "labelloc": "c"},
            "fontsize": "14",
        }
        return Node(component.label, nodeid=component.node_id, **{**box, **attrs})
    module, _, name = component.look.rpartition(".")
    icon = getattr(importlib.import_module(module), name)
    return icon(component.label, nodeid=component.node_id, **{"fontsize": "14", **attrs})


def edge(label: str = "", color: str = ASYNC, **attrs: str) -> Any:
    from diagrams import Edge

    return Edge(label=label, color=color, fontcolor=color, fontsize="13", **attrs)
