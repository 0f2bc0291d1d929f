"""Tool calling: the prompt, the grammar of the calls, and the calls parsed back (pure).

A chat template that reads ``tools`` (Qwen2.5's, Hermes') renders the tools, the calls
and the tool results itself (``prompt_text``). SmolLM2's (ChatML) renders ``role`` and
``content`` only, so for such templates the conversation is rewritten in the Hermes
function-calling convention, the one those templates write natively:

- the tools are described in the system message, with the JSON Schema of their arguments;
- the assistant calls a tool by answering
  ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` (with
  ``parallel_tool_calls``, up to one call per offered function, on consecutive lines);
- an assistant message with ``tool_calls`` is rendered back that way, and a ``role: tool``
  message as ``<tool_response>\\n...\\n</tool_response>``.

Either way the model answers calls in that convention (the one these native templates
teach), and the calls are enforced, not hoped for: ``tool_grammar`` is a Lark grammar (for
``llmos.llm.constraints``) whose ``%json`` rules are the functions' parameter schemas, so
every emitted call names a real function and its arguments validate (bounded where the
schema leaves them open, ``llmos.llm.schema_bounds``, so that the call ends). With
``tool_choice: "auto"`` the answer is either calls or text that does not start with ``<``
(or, with a ``response_format`` schema, a document of that schema).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llmos.llm.chat import ChatTemplate, Message
from llmos.llm.constraints import json_schema_grammar_text
from llmos.llm.schema_bounds import bounded

CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)

MAX_PARALLEL_CALLS = 8
Choice = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ToolSpec:
    functions: tuple[Function, ...]
    choice: Choice = "auto"
    name: str | None = None  # the function tool_choice names (choice == "function")
    parallel: bool = True  # parallel_tool_calls

    @property
    def active(self) -> bool:
        """Whether the model is offered the tools at all."""
        return bool(self.functions) and self.choice != "none"

    @property
    def offered(self) -> tuple[Function, ...]:
        if self.choice == "function":
            return tuple(f for f in self.functions if f.name == self.name)
        return self.functions


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it

    def wire(self, index: int | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "type": "function",
                               "function": {"name": self.name, "arguments": self.arguments}}
        return doc if index is None else {"index": index, **doc}


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def system_prompt(spec: ToolSpec) -> str:
    lines = ["You can call functions. Each is given as JSON with the schema of its "
             "arguments:"]
    for f in spec.offered:
        lines.append(json.dumps({"name": f.name, "description": f.description,
                                 "parameters": f.parameters}))
    lines.append("To call a function, answer with its name and arguments as JSON inside "
                 f"tags:\n{CALL_OPEN}\n"
                 '{"name": "<function name>", "arguments": {<arguments>}}'
                 f"\n{CALL_CLOSE}")
    if spec.choice == "required":
        lines.append("You must call at least one function now.")
    elif spec.choice == "function":
        lines.append(f"You must call the function {spec.name} now.")
    else:
        lines.append("Call a function when it helps to answer; otherwise answer directly.")
    return "\n".join(lines)


def render_calls(content: str, calls: Sequence[tuple[str, Any]]) -> str:
    """An assistant turn that called tools, as the model would have written it."""
    parts = [content] if content else []
    for name, arguments in calls:
        parts.append(f"{CALL_OPEN}\n{json.dumps({'name': name, 'arguments': arguments})}"
                     f"\n{CALL_CLOSE}")
    return "\n".join(parts)


def render_result(content: str) -> str:
    return f"<tool_response>\n{content}\n</tool_response>"


def in_convention(messages: Sequence[Message]) -> tuple[Message, ...]:
    """Tool calls and results written as plain content, for templates without tools."""
    out = []
    for m in messages:
        if m.tool_calls:
            calls = [(c["function"]["name"], c["function"]["arguments"]) for c in m.tool_calls]
            out.append(Message(m.role, render_calls(m.content, calls)))
        elif m.role == "tool":
            out.append(Message(m.role, render_result(m.content)))
        else:
            out.append(Message(m.role, m.content))
    return tuple(out)


def wire_tools(spec: ToolSpec) -> list[dict[str, Any]]:
    """The offered functions as chat templates take them (OpenAI's tools shape)."""
    return [{"type": "function", "function": {
        "name": f.name, "description": f.description, "parameters": dict(f.parameters)}}
        for f in spec.offered]


def prompt_text(template: ChatTemplate, messages: Sequence[Message],
                spec: ToolSpec | None) -> str:
    """The prompt of a conversation that may involve tools, in the template's own tool
    syntax when it has one, otherwise in the convention."""
    active = spec is not None and spec.active
    if template.speaks_tools:
        return template.render(messages, tools=wire_tools(spec) if spec and active else None)
    converted = in_convention(messages)
    return template.render(with_tools(converted, spec) if spec and active else converted)


def with_tools(messages: Sequence[Message], spec: ToolSpec) -> tuple[Message, ...]:
    """The conversation with the tools described in its system message."""
    if not spec.active:
        return tuple(messages)
    prompt = system_prompt(spec)
    if messages and messages[0].role in ("system", "developer"):
        first = messages[0]
        return (Message("system", f"{first.content}\n\n{prompt}" if first.content
                        else prompt), *messages[1:])
    return (Message("system", prompt), *messages)


def _call_schema(f: Function) -> dict[str, Any]:
    return {"type": "object", "properties": {"name": {"const": f.name},
                                             "arguments": dict(f.parameters)},
            "required": ["name", "arguments"], "additionalProperties": False}


def tool_grammar(spec: ToolSpec, answer_schema: Mapping[str, Any] | None = None) -> str:
    """The Lark grammar of the answers ``spec`` allows (``spec.active`` must hold)."""
    offered = spec.offered
    schema = bounded(_call_schema(offered[0]) if len(offered) == 1
                     else {"anyOf": [_call_schema(f) for f in offered]})
    # Parallel calls: at most one per function offered, so a small model that keeps
    # repeating itself still ends (after the last call only the end token is allowed).
    most = min(len(offered), MAX_PARALLEL_CALLS) if spec.parallel else 1
    calls = "call"
    for _ in range(most - 1):
        calls = f'call ("\\n" {calls})?'
    rules = [
        f"calls: {calls}",
        f'call: "{CALL_OPEN}\\n" call_json "\\n{CALL_CLOSE}"',
        f"call_json: %json {json_schema_grammar_text(schema)}",
    ]
    if spec.choice in ("required", "function"):
        return "\n".join(["start: calls", *rules])
    if answer_schema is not None:
        answer = [f"answer: %json {json_schema_grammar_text(bounded(answer_schema))}"]
    else:
        answer = [r"answer: TEXT", r"TEXT: /[^<][\s\S]*/"]
    return "\n".join(["start: calls | answer", *rules, *answer])


def parse_calls(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    """The content and tool calls of a generated answer (calls that do not parse, as in an
    answer cut short by max_tokens, stay in the content)."""
    calls: list[ToolCall] = []
    rest: list[str] = []
    pos = 0
    for m in _CALL.finditer(text):
        try:
            doc = json.loads(m.group(1))
            name, arguments = doc["name"], doc["arguments"]
        except (ValueError, KeyError, TypeError):
            continue
        if not isinstance(name, str):
            continue
        rest.append(text[pos:m.start()])
        pos = m.end()
        calls.append(ToolCall(new_call_id(), name, json.dumps(arguments)))
    rest.append(text[pos:])
    content = "".join(rest).strip()
    return (content or None) if calls else text, tuple(calls)
