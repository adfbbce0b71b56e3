"""Exit codes of `chatjobs`, and the error that carries one to `main`."""

from __future__ import annotations

from typing import Final

from rich.console import Console

EXIT_OK: Final = 0
EXIT_JOB_FAILED: Final = 1  # the job failed or was cancelled; a batch ended with failures
EXIT_USAGE: Final = 2  # bad flags or arguments, an unreadable or malformed input file
EXIT_HTTP: Final = 3  # the API answered 4xx/5xx (or something that is not JSON)
EXIT_UNREACHABLE: Final = 4  # no connection to the API, or no answer in time
EXIT_STILL_RUNNING: Final = 5  # a --wait ran out while the job or batch was still running
EXIT_INTERRUPTED: Final = 130

EPILOG: Final = (
    "Environment: CHATJOBS_URL (API base URL, default http://127.0.0.1:8000), "
    "CHATJOBS_API_KEY (bearer key), CHATJOBS_ADMIN_KEY (admin key of `chatjobs keys`).\n\n"
    f"Exit codes: {EXIT_OK} ok · {EXIT_JOB_FAILED} job failed or cancelled, batch had failures · "
    f"{EXIT_USAGE} usage error · {EXIT_HTTP} HTTP error from the API (4xx/5xx) · "
    f"{EXIT_UNREACHABLE} server unreachable · "
    f"{EXIT_STILL_RUNNING} --wait ran out with the job or batch still running."
)


class CliError(Exception):
    """Stops the command: `main` prints the message and exits with `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# Messages and progress; stdout carries only the answer. soft_wrap: a line is printed whole and
# the terminal wraps it, so what a user copies (a --cursor, an id, a path) is never split by a
# newline (rich wraps at 80 columns when stderr is not a terminal).
err = Console(stderr=True, soft_wrap=True)
