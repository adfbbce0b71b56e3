"""OpenAI's API dialect, mounted at /openai/v1 over the same use cases as the native /v1."""
