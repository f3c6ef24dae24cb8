"""The OpenAPI document as the contract: operation ids from tags (`jobs-submit`), the problem+json
schema in components, and only the error codes each route declares (FastAPI's generic 422 with
its own schema is dropped: every validation error here is a problem+json 422, declared where it
can happen). `openapi.json` at the repository root is the committed snapshot a test compares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel

from gisp_service.api.errors import PROBLEM_JSON, FieldError, Problem

SNAPSHOT = Path(__file__).resolve().parent.parent / "openapi.json"
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}"


def _problem_schemas() -> dict[str, Any]:
    schemas = {}
    for model in (FieldError, Problem):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        schemas[model.__name__] = schema
    return schemas


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    content = response.get("content", {})
    refs = [media.get("schema", {}).get("$ref", "") for media in content.values()]
    return PROBLEM_JSON not in content and any(ref.endswith("/HTTPValidationError") for ref in refs)


def _rename_pages(schema: dict[str, Any]) -> dict[str, Any]:
    """pydantic names `Page[JobOut]` `Page_JobOut_`; the contract calls it `JobPage`."""
    text = json.dumps(schema)
    for name in [n for n in schema["components"]["schemas"] if n.startswith("Page_") and n.endswith("_")]:
        item = name.removeprefix("Page_").removesuffix("_")
        text = text.replace(f'"{name}"', f'"{item.removesuffix("Out")}Page"')
        text = text.replace(f'/{name}"', f'/{item.removesuffix("Out")}Page"')
        text = text.replace(f'"Page[{item}]"', f'"{item.removesuffix("Out")}Page"')
    return json.loads(text)


def _exact_bounds(components: dict[str, Any], models: tuple[type[BaseModel], ...]) -> None:
    """FastAPI's OpenAPI model holds `maximum` as a float, which turns 2**63-1 into 2**63; put
    back the models' own integer bounds."""
    for model in models:
        own = model.model_json_schema()["properties"]
        for name, prop in components.get(model.__name__, {}).get("properties", {}).items():
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                if isinstance(own.get(name, {}).get(key), int):
                    prop[key] = own[name][key]


def install(
    app: FastAPI, exact: tuple[type[BaseModel], ...] = (), components: tuple[type[BaseModel], ...] = ()
) -> None:
    """Replace `app.openapi` with the cleaned document (built once, as FastAPI caches it);
    `exact`: request models whose integer bounds must survive as written; `components`: models a
    route reads by hand (a streamed upload) and names in its `openapi_extra`."""
    build, extra_models = app.openapi, components

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        for path in schema["paths"].values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if "422" in responses and _is_fastapi_validation(responses["422"]):
                    del responses["422"]
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in FASTAPI_VALIDATION:
            components.pop(name, None)
        components.update(_problem_schemas())
        _exact_bounds(components, exact)
        for model in extra_models:
            components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        app.openapi_schema = _rename_pages(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(app: FastAPI) -> str:
    """The document as the snapshot file holds it."""
    return json.dumps(app.openapi(), indent=1, sort_keys=True) + "\n"
