"""Chat messages -> prompt text with the model's own chat template (the only ``jinja2`` import).

The template ships inside the pack; it runs in jinja2's immutable sandbox, the way
Hugging Face renders it (``messages``, ``add_generation_prompt``, special tokens and
``raise_exception`` are in scope).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import jinja2
import jinja2.meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llmos.errors import BadRequestError, ModelLoadError

ROLES = ("system", "user", "assistant", "tool", "developer")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    # Hugging Face's shapes, for templates with tool syntax: {"type": "function",
    # "function": {"name", "arguments" (a dict)}}; and the id a tool message answers.
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None

    def context(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            doc["tool_calls"] = [dict(c) for c in self.tool_calls]
        if self.tool_call_id is not None:
            doc["tool_call_id"] = self.tool_call_id
        return doc


def _raise(message: str) -> NoReturn:
    raise BadRequestError(f"the chat template refused the conversation: {message}",
                          "check the order and roles of the messages")


class ChatTemplate:
    def __init__(self, source: str, special_tokens: Mapping[str, str] | None = None) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = _raise
        try:
            self._template = env.from_string(source)
            # A template that reads ``tools`` writes the tools and calls its own way.
            self.speaks_tools = "tools" in jinja2.meta.find_undeclared_variables(
                env.parse(source))
        except jinja2.TemplateError as exc:
            raise ModelLoadError(f"the pack's chat template does not parse: {exc}",
                                 "repack the model with a valid chat template") from exc
        self._specials = dict(special_tokens or {})

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True,
               tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        context: dict[str, Any] = {
            "messages": [m.context() for m in messages],
            "add_generation_prompt": add_generation_prompt,
            **self._specials,
        }
        if tools:
            context["tools"] = [dict(t) for t in tools]
        try:
            return self._template.render(**context)
        except jinja2.TemplateError as exc:
            raise BadRequestError(f"the chat template failed on these messages: {exc}",
                                  "send messages with roles system, user and assistant") from exc
