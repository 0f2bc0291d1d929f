"""Bounds where a schema leaves the document open (pure)."""

from __future__ import annotations

import jsonschema

from llmos.llm.schema_bounds import (
    ANY,
    KEY_PATTERN,
    MAX_DEPTH,
    MAX_ITEMS,
    MAX_KEY,
    MAX_MAGNITUDE,
    MAX_PROPERTIES,
    MAX_STRING,
    NUMBER_STEP,
    bounded,
)

PERSON = {"type": "object",
          "properties": {"name": {"type": "string"},
                         "nick": {"type": ["string", "null"], "maxLength": 10},
                         "tags": {"type": "array", "items": {"type": "string"}},
                         "kind": {"type": "string", "enum": ["a", "b"]},
                         "extra": {"type": "object", "properties": {"x": {"type": "integer"}},
                                   "additionalProperties": True}},
          "required": ["name"]}


def test_open_strings_arrays_and_objects_get_bounds() -> None:
    b = bounded(PERSON)
    props = b["properties"]
    assert b["additionalProperties"] is False
    assert props["name"]["maxLength"] == MAX_STRING
    assert props["nick"]["maxLength"] == 10  # given: kept
    assert props["tags"]["maxItems"] == MAX_ITEMS
    assert props["tags"]["items"]["maxLength"] == MAX_STRING
    assert "maxLength" not in props["kind"]  # an enum is bounded already
    assert props["extra"]["additionalProperties"] is True  # given: kept
    assert PERSON["properties"]["name"] == {"type": "string"}  # the original is untouched


def test_a_free_form_object_gets_bounded_values() -> None:
    b = bounded({"type": "object"})
    assert b["maxProperties"] == MAX_PROPERTIES
    assert b["patternProperties"] == {KEY_PATTERN: {"$ref": f"#/$defs/{ANY}_{MAX_DEPTH - 1}"}}
    assert b["additionalProperties"] is False
    doc = {"a": "x", "b": [1, {"c": None}], "d": True}
    jsonschema.validate(doc, b)


def test_free_form_values_nest_only_so_deep_and_keys_are_short() -> None:
    b = bounded({"type": "object"})
    deep: object = 1
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    jsonschema.validate({"a": deep}, b)  # MAX_DEPTH levels of containers, the object's too
    too_deep = [deep]
    assert not jsonschema.Draft202012Validator(b).is_valid({"a": too_deep})
    assert not jsonschema.Draft202012Validator(b).is_valid({"k" * (MAX_KEY + 1): 1})


def test_bounded_documents_validate_against_the_original() -> None:
    doc = {"name": "Ana", "nick": None, "tags": ["x"], "kind": "a", "extra": {"x": 1}}
    jsonschema.validate(doc, bounded(PERSON))
    jsonschema.validate(doc, PERSON)


def test_nested_definitions_and_combinators_are_bounded() -> None:
    b = bounded({"$defs": {"s": {"type": "string"}},
                 "anyOf": [{"$ref": "#/$defs/s"}, {"type": "array"}]})
    assert b["$defs"]["s"]["maxLength"] == MAX_STRING
    assert b["anyOf"][1]["maxItems"] == MAX_ITEMS


def test_numbers_get_a_range_and_a_step_unless_given() -> None:
    b = bounded({"type": "object", "properties": {
        "i": {"type": "integer"}, "n": {"type": "number", "exclusiveMinimum": 0},
        "m": {"type": "number", "multipleOf": 0.5, "maximum": 3}}})["properties"]
    assert (b["i"]["minimum"], b["i"]["maximum"]) == (-MAX_MAGNITUDE, MAX_MAGNITUDE)
    assert "multipleOf" not in b["i"]
    assert "minimum" not in b["n"] and b["n"]["multipleOf"] == NUMBER_STEP
    assert (b["m"]["multipleOf"], b["m"]["maximum"]) == (0.5, 3)
