"""Pydantic models rebuilt from the JSON Schema an agent sent for its reply type.

A client that cannot import an agent's reply class (it runs elsewhere, or the agent is a script)
still gets a validated model: the agent sends ``model_json_schema()`` of its reply type when the
client asks for it, and this module turns that schema back into a model with the same fields,
types, defaults and nesting. It covers what pydantic itself emits for plain data models
(objects, ``$defs``/``$ref``, arrays, maps, ``anyOf`` unions, ``enum``/``const``, ``null``);
anything else becomes ``Any`` for that field, so an exotic field never costs a reply.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model

__all__ = ["model_from_schema"]

_SCALARS: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
}


class _Builder:
    def __init__(self, root: dict[str, Any]) -> None:
        self._defs: dict[str, Any] = dict(root.get("$defs") or root.get("definitions") or {})
        self._built: dict[str, type[BaseModel]] = {}

    def model(self, name: str, schema: dict[str, Any]) -> type[BaseModel]:
        if name in self._built:
            return self._built[name]
        required = set(schema.get("required") or ())
        fields: dict[str, Any] = {}
        for field_name, prop in (schema.get("properties") or {}).items():
            annotation = self.annotation(prop)
            if field_name in required:
                fields[field_name] = (annotation, ...)
            else:
                fields[field_name] = (annotation, Field(default=prop.get("default")))
        model = create_model(
            str(schema.get("title") or name),
            __config__=ConfigDict(extra="allow"),
            **fields,
        )
        self._built[name] = model
        return model  # type: ignore[no-any-return]

    def annotation(self, prop: dict[str, Any]) -> Any:
        if "$ref" in prop:
            name = str(prop["$ref"]).rsplit("/", 1)[-1]
            target = self._defs.get(name)
            return self.model(name, target) if isinstance(target, dict) else Any
        if "const" in prop:
            return Literal[prop["const"]]
        if prop.get("enum"):
            return Literal[tuple(prop["enum"])]
        options = prop.get("anyOf") or prop.get("oneOf")
        if options:
            return Union[tuple(self.annotation(o) for o in options)]  # noqa: UP007
        kind = prop.get("type")
        if isinstance(kind, list):
            return Union[tuple(self.annotation({**prop, "type": k}) for k in kind)]  # noqa: UP007
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = prop.get("items")
            return list[self.annotation(items) if isinstance(items, dict) else Any]  # type: ignore[misc]
        if kind == "object":
            if prop.get("properties"):
                return self.model(str(prop.get("title") or "Object"), prop)
            values = prop.get("additionalProperties")
            return dict[str, self.annotation(values) if isinstance(values, dict) else Any]  # type: ignore[misc]
        return Any


def model_from_schema(schema: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model validating what ``schema`` (an object's JSON Schema) describes."""
    return _Builder(schema).model(str(schema.get("title") or "Reply"), schema)
