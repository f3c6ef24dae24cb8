"""The client's resource types are checked against the committed OpenAPI document, so a field
the server adds, drops or retypes fails here instead of drifting silently."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from gisp_service.client import resources

SNAPSHOT = Path(__file__).resolve().parents[2] / "openapi.json"
COMPONENTS = json.loads(SNAPSHOT.read_text())["components"]["schemas"]
CLIENT_TYPES = {
    resources.Dataset: "DatasetOut",
    resources.Job: "JobOut",
    resources.Progress: "Progress",
    resources.JobError: "JobError",
    resources.Event: "EventOut",
    resources.Layer: "LayerWidth",
    resources.Checkpoint: "CheckpointOut",
}
JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def _json_types(annotation: Any) -> set[str]:
    """The JSON types a Python annotation admits (a TypedDict or a Literal counts as its JSON shape)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return set().union(*(_json_types(a) for a in get_args(annotation)))
    if annotation is type(None):
        return {"null"}
    if origin is Literal:
        return {JSON_TYPES[type(v)] for v in get_args(annotation)}
    if typing.is_typeddict(annotation):
        return {"object"}
    return {JSON_TYPES[origin or annotation]}


def _schema_types(schema: dict[str, Any]) -> set[str]:
    if "anyOf" in schema:
        return set().union(*(_schema_types(s) for s in schema["anyOf"]))
    if "$ref" in schema:
        return {"object"}
    kind = schema.get("type")
    if kind is None and "enum" in schema:
        return {JSON_TYPES[type(v)] for v in schema["enum"]}
    if kind == "integer":
        return {"integer", "number"}  # an int is a valid JSON number where the client says float
    return {kind} if isinstance(kind, str) else set(kind)


@pytest.mark.parametrize("client_type", list(CLIENT_TYPES), ids=lambda t: t.__name__)
def test_client_types_match_the_contract(client_type) -> None:
    component = COMPONENTS[CLIENT_TYPES[client_type]]
    hints = get_type_hints(client_type)
    assert set(hints) == set(component["properties"]), f"{client_type.__name__} vs {CLIENT_TYPES[client_type]}"
    for name, annotation in hints.items():
        server = _schema_types(component["properties"][name])
        client = _json_types(annotation)
        assert client & server and client - {"integer"} <= server | {"number"}, (name, client, server)


def test_the_checker_catches_a_drifted_field() -> None:
    class Drifted(typing.TypedDict):
        id: str
        bytes: str  # the server sends an integer

    with pytest.raises(AssertionError):
        hints = get_type_hints(Drifted)
        server = _schema_types(COMPONENTS["DatasetOut"]["properties"]["bytes"])
        assert _json_types(hints["bytes"]) & server
