"""`chatjobs`: a command-line client for the REST API. The console script runs `main`."""

from chatjobs_cli.app import main

__all__ = ["main"]
