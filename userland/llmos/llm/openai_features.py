"""The optional OpenAI request fields that change how tokens are chosen (pure parsing).

``n``, ``presence_penalty``, ``frequency_penalty``, ``logprobs``/``top_logprobs``,
``response_format`` and ``tools``/``tool_choice``/``parallel_tool_calls``, plus the
``tool_calls`` and ``role: tool`` messages of a conversation with tools. Each malformed
field is a ``FieldError`` naming it; the fields this server does not implement are
refused by ``openai_protocol``, never ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmos.llm.chat import Message
from llmos.llm.decoding import Penalties
from llmos.llm.logprobs import MAX_TOP_LOGPROBS
from llmos.llm.openai_fields import FieldError
from llmos.llm.tools import Function, ToolSpec

MAX_N = 8  # choices per request (each takes a decode slot)
MAX_COMPLETION_LOGPROBS = 5  # the legacy endpoint's bound


@dataclass(frozen=True)
class Features:
    n: int = 1
    penalties: Penalties = field(default_factory=Penalties)
    top_logprobs: int | None = None  # None: no log-probabilities; else alternatives listed
    json_schema: Mapping[str, Any] | None = None  # response_format, as a JSON schema
    tools: ToolSpec | None = None

    @property
    def constrained(self) -> bool:
        return self.json_schema is not None or (self.tools is not None and self.tools.active)


def _number(doc: Mapping[str, Any], key: str) -> float:
    v = doc.get(key)
    if v is None:
        return 0.0
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FieldError(key, f"must be a number, got {json.dumps(v)}")
    if not -2.0 <= v <= 2.0:
        raise FieldError(key, f"must be between -2 and 2, got {v}")
    return float(v)


def _count(doc: Mapping[str, Any], key: str, lo: int, hi: int) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise FieldError(key, f"must be an integer, got {json.dumps(v)}")
    if not lo <= v <= hi:
        raise FieldError(key, f"must be between {lo} and {hi}, got {v}")
    return v


def _common(doc: Mapping[str, Any]) -> tuple[int, Penalties]:
    n = _count(doc, "n", 1, MAX_N) or 1
    return n, Penalties(_number(doc, "presence_penalty"), _number(doc, "frequency_penalty"))


def completion_features(doc: Mapping[str, Any]) -> Features:
    n, penalties = _common(doc)
    return Features(n, penalties, _count(doc, "logprobs", 0, MAX_COMPLETION_LOGPROBS))


def _chat_logprobs(doc: Mapping[str, Any]) -> int | None:
    on = doc.get("logprobs")
    if on is not None and not isinstance(on, bool):
        raise FieldError("logprobs", f"must be true or false, got {json.dumps(on)}")
    top = _count(doc, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    if top is not None and not on:
        raise FieldError("top_logprobs", "needs logprobs: true")
    return (top or 0) if on else None


def _schema(v: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(v, dict):
        raise FieldError(param, "must be a JSON Schema object")
    return v


def _response_format(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    fmt = doc.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise FieldError("response_format.json_schema",
                             "must be an object with a name and a schema")
        return _schema(spec.get("schema", {}), "response_format.json_schema.schema")
    raise FieldError("response_format", "type must be text, json_object or json_schema, "
                     f"got {json.dumps(fmt)}")


def _function(i: int, raw: Any) -> Function:
    where = f"tools[{i}]"
    if not isinstance(raw, dict) or raw.get("type") != "function" \
            or not isinstance(raw.get("function"), dict):
        raise FieldError(where, 'only {"type": "function", "function": {...}} tools are '
                         "supported")
    f = raw["function"]
    name = f.get("name")
    if not isinstance(name, str) or not name:
        raise FieldError(f"{where}.function.name", "is required and must be a string")
    description = f.get("description") or ""
    if not isinstance(description, str):
        raise FieldError(f"{where}.function.description", "must be a string")
    params = f.get("parameters")
    return Function(name, description, {"type": "object", "properties": {}}
                    if params is None else _schema(params, f"{where}.function.parameters"))


def _tools(doc: Mapping[str, Any]) -> ToolSpec | None:
    if doc.get("functions") not in (None, []):
        raise FieldError("functions", "the deprecated functions field is not supported",
                         "send tools instead")
    raw = doc.get("tools")
    choice = doc.get("tool_choice")
    if raw is None or raw == []:
        if choice not in (None, "none", "auto"):
            raise FieldError("tool_choice", "needs tools")
        return None
    if not isinstance(raw, list):
        raise FieldError("tools", "must be a list of function tools")
    functions = tuple(_function(i, t) for i, t in enumerate(raw))
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise FieldError("tools", "function names must be unique")
    parallel = doc.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise FieldError("parallel_tool_calls", "must be true or false")
    if choice is None or choice in ("auto", "none", "required"):
        return ToolSpec(functions, choice or "auto", None, parallel)
    if isinstance(choice, dict) and choice.get("type") == "function" \
            and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if name not in names:
            raise FieldError("tool_choice", f"names no function in tools: {json.dumps(name)}")
        return ToolSpec(functions, "function", name, parallel)
    raise FieldError("tool_choice", 'must be "auto", "none", "required" or '
                     f'{{"type": "function", "function": {{"name": ...}}}}, got '
                     f"{json.dumps(choice)}")


def chat_features(doc: Mapping[str, Any]) -> Features:
    n, penalties = _common(doc)
    return Features(n, penalties, _chat_logprobs(doc), _response_format(doc), _tools(doc))


def _arguments(where: str, raw: Any) -> Any:
    if not isinstance(raw, str):
        raise FieldError(where, "must be a string of JSON")
    try:
        return json.loads(raw)
    except ValueError:
        raise FieldError(where, "is not valid JSON") from None


def tool_message(i: int, m: Mapping[str, Any], role: str, content: str) -> Message:
    """A message, with its ``tool_calls`` (arguments parsed, as chat templates take them)
    or the ``tool_call_id`` it answers."""
    calls = m.get("tool_calls")
    if role == "assistant" and calls:
        if not isinstance(calls, list):
            raise FieldError(f"messages[{i}].tool_calls", "must be a list")
        parsed = []
        for j, c in enumerate(calls):
            where = f"messages[{i}].tool_calls[{j}]"
            f = c.get("function") if isinstance(c, dict) else None
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                raise FieldError(where, "must be {id, type: function, function: {name, "
                                 "arguments}}")
            parsed.append({"type": "function", "id": c.get("id"), "function": {
                "name": f["name"],
                "arguments": _arguments(f"{where}.function.arguments", f.get("arguments"))}})
        return Message(role, content, tuple(parsed))
    if role == "tool":
        call_id = m.get("tool_call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise FieldError(f"messages[{i}].tool_call_id", "must be a string")
        return Message(role, content, tool_call_id=call_id)
    return Message(role, content)
