"""The operator console at /console: server-rendered pages (Jinja2) over AdminService, refreshed
in place by htmx, charts by Chart.js, both served from the package (api/static/console/)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.console import actions, pages
from api.console.session import CsrfRefused, SignedOut
from api.console.views import STATIC_DIR, STATIC_PATH, render


def install_console(app: FastAPI) -> None:
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="console-static")
    app.include_router(pages.router)
    app.include_router(actions.router)

    @app.exception_handler(SignedOut)
    async def signed_out(request: Request, exc: SignedOut) -> Response:
        if request.headers.get("HX-Request"):  # a fragment: send the whole page to sign-in
            return Response(status_code=401, headers={"HX-Redirect": "/console/sign-in"})
        return RedirectResponse("/console/sign-in", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def csrf_refused(request: Request, exc: CsrfRefused) -> HTMLResponse:
        message = "The form's security token is missing or wrong: reload the page and try again."
        return render(request, "error.html", {"message": message}, status_code=403)
