"""GET /openai/v1/models: the models this deployment serves, in OpenAI's list format."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import ChatDep, TenantDep
from api.openai.errors import OpenAIError

router = APIRouter()
OWNER = "chatjobs"
CREATED = 0  # the models are the operator's configuration; they have no creation time here


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = CREATED
    owned_by: str = OWNER


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


@router.get("/models", response_model=ModelList)
async def list_models(chat: ChatDep, tenant: TenantDep) -> ModelList:
    """The models a request's `model` may name: primary, fallback and aliases."""
    return ModelList(data=[Model(id=name) for name in chat.models.names])


@router.get("/models/{model:path}", response_model=Model)
async def get_model(model: str, chat: ChatDep, tenant: TenantDep) -> Model:
    """One served model; any other name is 404 `model_not_found`."""
    if model not in chat.models.names:
        raise OpenAIError(404, "model_not_found", f"model {model[:80]!r} is not served here")
    return Model(id=model)
