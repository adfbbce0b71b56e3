"""Process logging for `python -m api` and `python -m worker`."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log every call at INFO; their warnings still show.
QUIET = ("google_genai", "httpx", "httpcore")


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format=FORMAT)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
