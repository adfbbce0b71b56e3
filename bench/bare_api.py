"""The bare-endpoint baseline: one FastAPI POST validating a small pydantic body, served as
`python -m api` serves the service (uvicorn, uvloop, httptools, one process).

`python -m bench.bare_api PORT`
"""

from __future__ import annotations

import sys
from typing import Literal

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Body(BaseModel):
    messages: list[Message]


class Answer(BaseModel):
    id: str
    status: str


@app.post("/v1/jobs", status_code=202)
async def create_job(body: Body) -> Answer:
    return Answer(id="job_0", status="queued")


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]))  # uvicorn defaults, access log on
