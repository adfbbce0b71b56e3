"""Shape: the base of the dialect's models. A field's docstring is its OpenAPI description."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Shape(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)
