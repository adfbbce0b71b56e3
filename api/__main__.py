"""`python -m api`: serve the API with uvicorn on HOST:PORT."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from shared.logs import configure_logging


def main() -> None:
    configure_logging()
    app = create_app()
    settings = app.state.settings
    uvicorn.run(app, host=settings.host, port=settings.port)


if __name__ == "__main__":
    main()
