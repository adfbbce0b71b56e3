"""The `chatjobs` app: global options, the commands' names, and `main` (the console script)."""

import functools
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape

from chatjobs_cli import batches, jobs, keys, openai_batches, usage
from chatjobs_cli.exits import (
    EPILOG,
    EXIT_HTTP,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    err,
)
from chatjobs_cli.http import Target, checked, target

app = typer.Typer(
    name="chatjobs",
    help="Command-line client for the chatjobs API: submit prompts and batches, follow them, "
    "list, cancel, fetch results, see your usage, and (admins) manage API keys.",
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def package_version() -> str:
    try:
        return version("chatjobs")
    except PackageNotFoundError:
        return "0.0.0"


def _print_version(shown: bool) -> None:
    if shown:
        print(f"chatjobs {package_version()}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    ctx: typer.Context,
    base_url: Annotated[
        str,
        typer.Option(envvar="CHATJOBS_URL", help="Base URL of the API (env CHATJOBS_URL)."),
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="CHATJOBS_API_KEY",
            show_default=False,
            help="API key sent as 'Authorization: Bearer' (env CHATJOBS_API_KEY).",
        ),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    ctx.obj = Target(base_url, api_key)


def webhook_secret(ctx: typer.Context) -> int:
    """Print this key's webhook signing secret (whsec_...)."""
    with target(ctx).client() as http:
        print(checked(http.get("/v1/webhook-secret"))["secret"])
    return EXIT_OK


def command(run: Callable[..., int]) -> Callable[..., None]:
    """A typer command from a function that returns its exit code. CliError and the HTTP
    client's errors become a message on stderr and their exit code."""

    @functools.wraps(run)
    def command(*args: Any, **kwargs: Any) -> None:
        try:
            code = run(*args, **kwargs)
        except CliError as exc:
            code = _failed(str(exc), exc.code)
        except httpx.TransportError as exc:
            code = _failed(f"cannot reach {_server(exc)}: {_reason(exc)}", EXIT_UNREACHABLE)
        except httpx.HTTPError as exc:
            code = _failed(_reason(exc), EXIT_HTTP)
        raise typer.Exit(code)

    return command


def _failed(message: str, code: int) -> int:
    err.print(f"[red]error:[/red] {escape(message)}")
    return code


def _server(exc: httpx.TransportError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "the API"
    return f"{url.scheme}://{url.netloc.decode()}"


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


app.command()(command(jobs.submit))
app.command()(command(jobs.get))
app.command("list")(command(jobs.list_jobs))
app.command()(command(jobs.cancel))
app.command()(command(jobs.delete))
app.command("batch")(command(batches.submit_batch))
app.command("batches")(command(batches.list_batches))
app.command()(command(batches.results))
app.command("retry-failed")(command(batches.retry_failed))
app.command("openai-batch")(command(openai_batches.openai_batch))
app.command("openai-file")(command(openai_batches.openai_file))
app.command("webhook-secret")(command(webhook_secret))
app.command()(command(usage.usage))

keys_app = typer.Typer(
    help="Make, list, revoke and rotate API keys (needs an admin key).",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
keys_app.callback()(keys.admin_options)
keys_app.command("create")(command(keys.create))
keys_app.command("list")(command(keys.list_keys))
keys_app.command("revoke")(command(keys.revoke))
keys_app.command("rotate")(command(keys.rotate))
app.add_typer(keys_app, name="keys")


def main(argv: list[str] | None = None) -> int:
    """Run one command and return its exit code (exits.py; usage errors: 2, Ctrl-C: 130)."""
    try:
        typer.main.get_command(app).main(args=argv, prog_name="chatjobs")
    except SystemExit as exc:  # standalone mode always ends here
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return EXIT_OK
