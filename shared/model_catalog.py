"""The models this deployment serves: the primary, the fallback and the operator's named aliases.

A request's `model` must be one of these names (or absent: the primary). Anything else is refused
at submit, so request text never reaches a provider's URL or body unchecked. Aliases are resolved
to their target only when the job runs, so a job keeps the name its caller chose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.errors import UnknownModel
from shared.models import ChatRequest

# What a model name may look like: provider ids such as `gemini-2.5-flash` or
# `openai/gpt-4o-mini`; never a path step, a query or a fragment.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*(/[A-Za-z0-9][A-Za-z0-9._:-]*)*")
SHOWN_CHARS = 80
DEFAULT_PRIMARY = "gemini-2.5-flash"
DEFAULT_FALLBACK = "openai/gpt-4o-mini"


def is_model_name(name: str) -> bool:
    return len(name) <= 200 and MODEL_NAME.fullmatch(name) is not None and ".." not in name


@dataclass(frozen=True)
class ModelCatalog:
    primary: str = DEFAULT_PRIMARY
    fallback: str = DEFAULT_FALLBACK
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every name a request may use, primary first."""
        return list(dict.fromkeys([self.primary, self.fallback, *self.aliases]))

    def check(self, model: str | None, where: str = "") -> None:
        """Raise UnknownModel unless `model` is absent or one of `names`."""
        if model is None or model in self.names:
            return
        shown = model if len(model) <= SHOWN_CHARS else model[:SHOWN_CHARS] + "…"
        served = ", ".join(self.names)
        message = f"{where}model {shown!r} is not served here; use one of: {served}"
        raise UnknownModel(message, field="model")

    def route(self, request: ChatRequest) -> ChatRequest:
        """The request with an alias replaced by the model it stands for."""
        target = self.aliases.get(request.model or "")
        return request.model_copy(update={"model": target}) if target else request
