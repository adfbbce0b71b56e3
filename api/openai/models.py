"""GET /openai/v1/models: the models this deployment serves, in OpenAI's list format."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path

from api.deps import ChatDep, TenantDep
from api.openai.errors import OpenAIError, documented
from api.openai.shape import Shape

router = APIRouter()
OWNER = "chatjobs"
CREATED = 0  # the models are the operator's configuration; they have no creation time here


class Model(Shape):
    """A model a request may name."""

    id: str
    """The name a request's `model` uses."""
    object: Literal["model"] = "model"
    """`model`."""
    created: int = CREATED
    """0: the operator's configuration has no date."""
    owned_by: str = OWNER
    """`chatjobs`."""


class ModelList(Shape):
    """Every model a request may name, the primary first."""

    object: Literal["list"] = "list"
    """`list`."""
    data: list[Model]
    """The models, the primary first."""


@router.get("/models", response_model=ModelList, responses=documented((401, "No valid API key")))
async def list_models(chat: ChatDep, tenant: TenantDep) -> ModelList:
    """The models a request's `model` may name: primary, fallback and aliases."""
    return ModelList(data=[Model(id=name) for name in chat.models.names])


@router.get(
    "/models/{model:path}",
    response_model=Model,
    responses=documented(
        (400, "Malformed request"),
        (401, "No valid API key"),
        (404, "Not served here (`model_not_found`)"),
    ),
)
async def get_model(
    model: Annotated[str, Path(description="A model's id.", examples=["gemini-2.5-flash"])],
    chat: ChatDep,
    tenant: TenantDep,
) -> Model:
    """One served model; any other name is 404 `model_not_found`."""
    if model not in chat.models.names:
        raise OpenAIError(404, "model_not_found", f"model {model[:80]!r} is not served here")
    return Model(id=model)
