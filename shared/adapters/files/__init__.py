"""FileStorage adapters: a local directory (embedded, self-hosted) and S3 (AWS)."""

from __future__ import annotations

import re

KEY = re.compile(r"[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*")
CHUNK_BYTES = 1 << 20


def checked(key: str) -> str:
    """A key the layout (shared/files.py) makes: never a path out of the store."""
    if not KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a storage key: {key[:100]!r}")
    return key
