"""GET /docs: Swagger UI from assets shipped inside the package, so the page works offline.

The assets are the official npm package `swagger-ui-dist`, vendored (only what the page loads, with
its licence) into api/static/swagger-ui/ by scripts/vendor-swagger-ui; VERSION there says which.
They are package data, so the wheel and both images carry them.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_DIR = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_PATH = "/static/swagger-ui"
DOCS_PATH = "/docs"


def install_docs(app: FastAPI) -> None:
    """Serve the UI at /docs and its assets under /static/swagger-ui (create the app with
    `docs_url=None`, so FastAPI does not add its own page that loads them from a CDN)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")  # behind a path prefix
        assets = f"{root}{ASSETS_PATH}"
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title}: API reference",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
        )
