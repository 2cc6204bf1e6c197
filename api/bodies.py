"""JSON request bodies, parsed only after the route's access check and refused with 4xx when malformed.

FastAPI reads and parses a body declared as a pydantic parameter *before* it
resolves any dependency, so a route taking ``body: Model`` would parse an
anonymous client's body before checking its token. ``JsonBody(Model)`` is a
dependency instead: declared after the access parameter, it runs after it.
The body is already bounded by ``limits.BodyLimit``; pydantic's JSON parser
bounds nesting depth. Not JSON, the wrong type or a missing field is 422 with
the hub's error headers, never a 500.
"""
from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError

from weightvault.errors import InvalidBody


M = TypeVar("M", bound=BaseModel)


def invalid(exc: ValidationError) -> InvalidBody:
    """422 naming each wrong field (never echoing the input, which may be huge)."""
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
    return InvalidBody(f"invalid request body: {problems}")


def JsonBody(model: type[M], *, optional: bool = False):
    """``Annotated[model, Depends(...)]`` parsing the body as ``model``; an empty body is ``model()`` if ``optional``."""

    async def parse(request: Request) -> M:
        raw = await request.body()
        if optional and not raw.strip():
            return model()
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            raise invalid(exc) from None

    return Annotated[model, Depends(parse)]


def documented(model: type[BaseModel], *, required: bool = True, media_type: str = "application/json") -> dict:
    """``openapi_extra`` describing ``model`` as the request body (the dependency hides it from FastAPI)."""
    return {"requestBody": {"required": required, "content": {media_type: {"schema": _inlined(model)}}}}


def _inlined(model: type[BaseModel]) -> dict:
    """The model's JSON schema with nested models written in place: a ``#/$defs/...`` reference would
    point into the OpenAPI document's root, where no ``$defs`` is (these models hold no cycles)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def expand(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return expand(defs[ref.removeprefix("#/$defs/")])
            return {k: expand(v) for k, v in node.items()}
        if isinstance(node, list):
            return [expand(v) for v in node]
        return node

    return expand(schema)
