"""GET /docs works offline: the page loads Swagger UI only from this service, every asset it
names answers 200 with its type, and the vendored files carry their licence."""

from __future__ import annotations

import re
import subprocess
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from api.docs_ui import ASSETS_DIR
from tests.unit.conftest import Api

URL_IN_SCRIPT = re.compile(r"""["'`]((?:https?:)?//[^"'`\s]+|/[^"'`\s]*)["'`]""")


class References(HTMLParser):
    """Every URL the page loads: src/href attributes and the strings of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.urls += URL_IN_SCRIPT.findall(data)


def referenced(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


async def test_docs_page_loads_nothing_from_another_host(api: Api) -> None:
    page = await api.client.get("/docs")
    assert page.status_code == 200
    urls = referenced(page.text)
    assert urls, page.text
    foreign = [url for url in urls if urlsplit(url).netloc]
    assert not foreign, f"/docs loads from other hosts: {foreign}"
    assert "/openapi.json" in urls


async def test_every_asset_the_page_names_is_served(api: Api) -> None:
    page = await api.client.get("/docs")
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}
    for url in referenced(page.text):
        answer = await api.client.get(url)
        assert answer.status_code == 200, url
        kind = next(kind for suffix, kind in types.items() if url.endswith(suffix))
        assert kind in answer.headers["content-type"], (url, answer.headers["content-type"])
        assert answer.content


async def test_unknown_asset_is_404(api: Api) -> None:
    assert (await api.client.get("/static/swagger-ui/../app.py")).status_code == 404
    assert (await api.client.get("/static/swagger-ui/nothing.js")).status_code == 404


def test_vendored_assets_carry_their_licence() -> None:
    shipped = {path.name for path in ASSETS_DIR.iterdir()}
    assert {"LICENSE", "NOTICE", "VERSION", "swagger-ui-bundle.js.LICENSE.txt"} <= shipped
    assert "Apache License" in (ASSETS_DIR / "LICENSE").read_text()
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", (ASSETS_DIR / "VERSION").read_text())


async def test_redoc_is_not_served_from_a_cdn(api: Api) -> None:
    assert (await api.client.get("/redoc")).status_code == 404


def test_assets_ship_in_the_wheel_and_the_images() -> None:
    """Package data of `api` (hatch puts it in the wheel; both Dockerfiles `COPY api ./api`),
    ignored neither by git, which hatch follows, nor by .dockerignore."""
    root = Path(__file__).resolve().parents[2]
    assets = [path.relative_to(root).as_posix() for path in ASSETS_DIR.iterdir()]
    assert all(asset.startswith("api/") for asset in assets)
    ignored_by_git = subprocess.run(
        ["git", "check-ignore", *assets], cwd=root, capture_output=True, text=True, check=False
    )
    assert ignored_by_git.stdout == "", ignored_by_git.stdout
    patterns = (root / ".dockerignore").read_text().split()
    for asset in assets:
        parts = asset.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        assert not [p for p in patterns for prefix in prefixes if fnmatch(prefix, p)], asset
    for dockerfile in ("Dockerfile", "Dockerfile.lambda"):
        assert "COPY api ./api" in (root / "infra/docker" / dockerfile).read_text()
