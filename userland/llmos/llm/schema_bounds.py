"""Bounds a JSON schema where it leaves the document open, so that it ends (pure).

Constrained decoding guarantees a valid prefix, not an end: a small model asked for
``{"summary": {"type": "string"}}`` writes prose into the string until ``max_tokens``
(it would end its answer with the end token, which the grammar forbids inside a
string), a number gets digit after digit, and an object that allows other properties
gets key after invented key. The document is then cut off and does not parse. Measured on
SmolLM2-135M, greedy: 9 of 15 schema/prompt pairs without bounds, and a json_object
request, ran to a 1,500-token limit.

So where the schema says nothing, the enforced grammar (never the schema the client
validates against) gets bounds: strings at most ``MAX_STRING`` characters, arrays at
most ``MAX_ITEMS`` items, free-form objects at most ``MAX_PROPERTIES`` properties with
names of at most ``MAX_KEY`` characters and bounded values nested at most ``MAX_DEPTH``
deep, and objects that list their ``properties`` no others (OpenAI's strict
mode requires that of every schema anyway). Every document of the bounded schema
validates against the original one; a bound the schema gives is kept. Numbers: within
+-``MAX_MAGNITUDE`` and, for ``number``, multiples of ``NUMBER_STEP`` (at most six
decimals), unless the schema sets its own range or step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_STRING = 256  # characters
MAX_ITEMS = 16
MAX_PROPERTIES = 16
MAX_KEY = 64  # characters of a free-form object's property names
KEY_PATTERN = f"^.{{1,{MAX_KEY}}}$"
MAX_DEPTH = 4  # levels of arrays and objects inside a free-form value
MAX_MAGNITUDE = 10**15  # integers and numbers within +-1e15...
NUMBER_STEP = 1e-6  # ...numbers with at most 6 decimals
ANY = "llmos_any_value"  # the $defs names of a bounded free-form value: ANY_0 ... ANY_DEPTH

_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMAS = ("items", "additionalProperties", "contains", "if", "then", "else")


def _types(node: Mapping[str, Any]) -> set[str]:
    t = node.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    return set()


def _ref(depth: int) -> dict[str, str]:
    return {"$ref": f"#/$defs/{ANY}_{depth}"}


def _free_object(values: dict[str, Any]) -> dict[str, Any]:
    """Any names (llguidance has no ``propertyNames``: a pattern bounds them), bounded
    values."""
    return {"type": "object", "patternProperties": {KEY_PATTERN: values},
            "additionalProperties": False, "maxProperties": MAX_PROPERTIES}


def _any_values() -> dict[str, Any]:
    """Free-form values, level by level: ``ANY_0`` scalars, ``ANY_d`` also arrays and
    objects of ``ANY_(d-1)`` (a recursive definition lets a model nest without end)."""
    scalars: list[dict[str, Any]] = [
        {"type": "string", "maxLength": MAX_STRING},
        {"type": "number", "minimum": -MAX_MAGNITUDE, "maximum": MAX_MAGNITUDE,
         "multipleOf": NUMBER_STEP},
        {"type": "boolean"}, {"type": "null"}]
    levels: dict[str, Any] = {f"{ANY}_0": {"anyOf": scalars}}
    for d in range(1, MAX_DEPTH + 1):
        levels[f"{ANY}_{d}"] = {"anyOf": [
            *scalars, {"type": "array", "items": _ref(d - 1), "maxItems": MAX_ITEMS},
            _free_object(_ref(d - 1))]}
    return levels


def _bound(node: Any, used_any: list[bool]) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [_bound(v, used_any) for v in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _bound(v, used_any) for k, v in value.items()}
        elif key in _SUBSCHEMAS and isinstance(value, dict):
            out[key] = _bound(value, used_any)
        else:
            out[key] = value
    types = _types(out)
    fixed = "enum" in out or "const" in out
    if "string" in types and not fixed and "maxLength" not in out:
        out["maxLength"] = MAX_STRING
    if types & {"integer", "number"} and not fixed:
        if "minimum" not in out and "exclusiveMinimum" not in out:
            out["minimum"] = -MAX_MAGNITUDE
        if "maximum" not in out and "exclusiveMaximum" not in out:
            out["maximum"] = MAX_MAGNITUDE
        if "number" in types and "multipleOf" not in out:
            out["multipleOf"] = NUMBER_STEP
    if "array" in types and not fixed and "maxItems" not in out:
        out["maxItems"] = MAX_ITEMS
    if "object" in types or "properties" in out:
        if "properties" in out or "patternProperties" in out:
            out.setdefault("additionalProperties", False)
        elif "additionalProperties" not in out and not fixed:
            free = _free_object(_ref(MAX_DEPTH - 1))
            out["patternProperties"] = free["patternProperties"]
            out["additionalProperties"] = False
            out.setdefault("maxProperties", MAX_PROPERTIES)
            used_any[0] = True
    return out


def bounded(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with bounds where it leaves strings, arrays and objects open."""
    used_any = [False]
    out: dict[str, Any] = _bound(dict(schema), used_any)
    if used_any[0]:
        out["$defs"] = {**(out.get("$defs") or {}), **_any_values()}
    return out
