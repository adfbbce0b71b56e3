"""The /openai/v1 router: every operation of the OpenAI dialect."""

from __future__ import annotations

from fastapi import APIRouter

from api.openai import batches, chat, files, models

router = APIRouter(prefix="/openai/v1", tags=["openai"])
router.include_router(chat.router)
router.include_router(models.router)
router.include_router(files.router)
router.include_router(batches.router)
