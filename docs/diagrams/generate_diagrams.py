"""Draw the five architecture diagrams into docs/asset/ (`make diagrams`; needs Graphviz's `dot`).

Each diagram module lists the components it draws (COMPONENTS) as data; tests/unit/test_diagrams.py
checks every one against the code, so a rename fails the tests instead of leaving a stale picture.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import aws_production
import dependency_injection
import local_development
import request_flow
import system_architecture

DIAGRAMS: tuple[ModuleType, ...] = (
    system_architecture,
    aws_production,
    request_flow,
    local_development,
    dependency_injection,
)
ASSET_DIR = Path(__file__).resolve().parents[1] / "asset"


def main(names: list[str]) -> int:
    ASSET_DIR.mkdir(parents=True, exist_ok=True)
    for diagram in DIAGRAMS:
        if not names or diagram.FILENAME in names:
            diagram.draw(ASSET_DIR)
            print(f"wrote {ASSET_DIR / diagram.FILENAME}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
