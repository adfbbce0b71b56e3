"""Settings → the Gemini client: the Gemini API or Vertex AI, one attempt, our timeout. The SDK's
client is built and inspected; nothing is called (no network)."""

from __future__ import annotations

import aiohttp
from google import genai

from shared.adapters.llm.build import build_llm, gemini_connection
from shared.adapters.llm.fallback import FallbackLLM
from shared.adapters.llm.gemini import API_VERSION, GeminiConnection, GeminiProvider
from tests.conftest import make_settings


def test_the_gemini_api_with_a_key_by_default() -> None:
    settings = make_settings(gemini_api_key="g-key", gemini_base_url="http://127.0.0.1:9")

    assert gemini_connection(settings) == GeminiConnection("g-key", "http://127.0.0.1:9")


def test_vertex_ai_with_a_project_and_location_when_set() -> None:
    settings = make_settings(
        google_genai_use_vertexai=True,
        google_cloud_project="chatjobs-prod",
        google_cloud_location="europe-west4",
        gemini_api_key="ignored-beside-a-project",
    )

    connection = gemini_connection(settings)

    assert (connection.vertexai, connection.project) == (True, "chatjobs-prod")
    assert connection.location == "europe-west4"


async def test_a_vertex_client_is_built_from_the_connection_without_a_call() -> None:
    connection = GeminiConnection(
        api_key="k", vertexai=True, project="chatjobs-prod", location="europe-west4"
    )
    async with aiohttp.ClientSession() as session:
        args = connection.client_args(20.0, session)
        client = genai.Client(**args)

        assert client.vertexai is True
        assert (args["project"], args["location"]) == ("chatjobs-prod", "europe-west4")
        assert "api_key" not in args  # a project means ADC; the SDK takes one or the other
        options = args["http_options"]
        assert options.api_version is None  # Vertex AI keeps the SDK's own version
        assert options.aiohttp_client is session
        client.close()
        await client.aio.aclose()


async def test_vertex_ai_express_mode_uses_the_key_when_no_project_is_set() -> None:
    connection = GeminiConnection(api_key="k", vertexai=True)
    async with aiohttp.ClientSession() as session:
        args = connection.client_args(20.0, session)
        client = genai.Client(**args)

        assert client.vertexai is True and args["api_key"] == "k" and "project" not in args
        client.close()
        await client.aio.aclose()


async def test_every_client_makes_one_attempt_within_llm_timeout_s() -> None:
    async with aiohttp.ClientSession() as session:
        for connection in (GeminiConnection(api_key="k"), GeminiConnection(vertexai=True)):
            options = connection.client_args(2.5, session)["http_options"]

            assert options.retry_options is not None and options.retry_options.attempts == 1
            assert options.timeout == 2500  # milliseconds
        gemini_api = GeminiConnection(api_key="k").client_args(2.5, session)["http_options"]
        assert (gemini_api.api_version, gemini_api.base_url) == (API_VERSION, None)


def test_vertex_ai_needs_no_gemini_key_to_be_the_primary() -> None:
    settings = make_settings(google_genai_use_vertexai=True, google_cloud_project="p")

    llm = build_llm(settings)

    assert isinstance(llm, FallbackLLM) and isinstance(llm.primary, GeminiProvider)
    assert llm.primary.connection.vertexai and llm.primary.connection.api_key is None


async def test_starting_a_vertex_provider_needs_no_network() -> None:
    """Credentials are looked up at the first call, not in start() (the socket guard of
    tests/conftest.py would refuse any address but loopback)."""
    provider = GeminiProvider(GeminiConnection(vertexai=True, project="p"), "gemini-2.5-flash", 5)

    await provider.start()
    await provider.close()
    await provider.close()  # a second close is a no-op


def test_the_key_stays_out_of_the_connection_repr() -> None:
    assert "g-secret" not in repr(GeminiConnection(api_key="g-secret"))
