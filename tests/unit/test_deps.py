"""api/deps.py: FastAPI runs a plain `def` dependency in a worker thread, so every one is async."""

from __future__ import annotations

import inspect
from typing import get_args

from fastapi.params import Depends

from api import deps


def test_every_dependency_alias_runs_on_the_event_loop() -> None:
    aliases = {name: get_args(value) for name, value in vars(deps).items() if name.endswith("Dep")}
    providers = {
        name: marker.dependency
        for name, args in aliases.items()
        for marker in args[1:]
        if isinstance(marker, Depends)
    }
    assert providers, "no dependency aliases found"
    blocking = [name for name, fn in providers.items() if not inspect.iscoroutinefunction(fn)]
    assert blocking == []
