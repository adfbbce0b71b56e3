"""README's "Use it from the OpenAI SDK" code runs as written against the API over HTTP
(embedded, no API keys, as `make run` serves it; the stub LLM answers)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from tests.conftest import make_settings
from tests.serving import ServedApi
from tests.stubs.fixtures import LLMStub

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Use it from the OpenAI SDK"
DOC_URL = "http://127.0.0.1:8000"


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n#", start + len(SECTION))  # the next heading: its own test runs that
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.DOTALL)


def test_the_readmes_sdk_code_runs_and_prints_answers(tmp_path: Path, llm_stub: LLMStub) -> None:
    blocks = python_blocks(SECTION)
    assert blocks, "the section has no python block"
    settings = make_settings(
        sqlite_path=str(tmp_path / "chatjobs.db"),
        gemini_api_key="test",
        gemini_base_url=llm_stub.gemini_base_url,
    )
    printed = io.StringIO()
    with ServedApi(settings) as api, contextlib.redirect_stdout(printed):
        for block in blocks:
            exec(compile(block.replace(DOC_URL, api.url), str(README), "exec"), {})
    lines = printed.getvalue().splitlines()
    assert lines[0].startswith("['gemini-2.5-flash', ")
    job_id, answer = lines[1].split(" ", 1)
    assert job_id.startswith("job_") and answer.startswith("gemini says: Name three prime numbers")
    assert lines[2] == "gemini says: Count to five"
