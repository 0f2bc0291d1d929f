"""The OpenAI answers' wire format (pure: choices in, dicts out), whole and streamed.

With tools, an answer that is tool calls (``llmos.llm.tools``) comes back as
``message.tool_calls`` and ``finish_reason: "tool_calls"``; streamed, the call text is
held back and sent as one ``tool_calls`` delta per call when the choice ends, while a
plain text answer streams as it is generated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llmos.llm import openai_protocol as proto
from llmos.llm.choices import Answer, Choice, usage
from llmos.llm.generation import Chunk
from llmos.llm.logprobs import TokenLogprob
from llmos.llm.tools import CALL_OPEN, ToolSpec, parse_calls

Doc = dict[str, Any]


def choices_usage(choices: Sequence[Choice]) -> dict[str, int]:
    return proto.usage(*usage(choices))


# --- /v1/completions ----------------------------------------------------------------------
def completion(head: Doc, choices: Sequence[Choice], answer: Answer) -> Doc:
    return {**head, "object": "text_completion", "choices": [
        {"index": i, "text": c.text, "logprobs": answer.completion_logprobs(c.logprobs, 0),
         "finish_reason": c.finish_reason} for i, c in enumerate(choices)],
        "usage": choices_usage(choices)}


class CompletionStream:
    """Streamed completion chunks, each choice's text offsets kept for its logprobs."""

    def __init__(self, head: Doc, answer: Answer) -> None:
        self.head = {**head, "object": "text_completion"}
        self.answer = answer
        self.offsets = [0] * answer.n

    def render(self, i: int, c: Chunk) -> list[Doc]:
        if not c.text and c.finish_reason is None and not c.logprobs:
            return []
        lp = self.answer.completion_logprobs(c.logprobs, self.offsets[i])
        self.offsets[i] += len(c.text)
        return [{**self.head, "choices": [{"index": i, "text": c.text, "logprobs": lp,
                                           "finish_reason": c.finish_reason}]}]

    def tail(self, used: dict[str, int]) -> list[Doc]:
        return [{**self.head, "choices": [], "usage": used}]


# --- /v1/chat/completions -----------------------------------------------------------------
def chat_message(text: str, finish: str | None, tools: ToolSpec | None) -> tuple[Doc, str | None]:
    """The assistant message of a finished choice, and its finish reason."""
    if tools is None or not tools.active or (
            tools.choice == "auto" and not text.startswith(CALL_OPEN)):
        return {"role": "assistant", "content": text}, finish
    content, calls = parse_calls(text)
    if not calls:
        return {"role": "assistant", "content": text}, finish
    return ({"role": "assistant", "content": content,
             "tool_calls": [c.wire() for c in calls]},
            "tool_calls" if finish == "stop" else finish)


def chat(head: Doc, choices: Sequence[Choice], answer: Answer) -> Doc:
    out = []
    for i, c in enumerate(choices):
        message, finish = chat_message(c.text, c.finish_reason, answer.features.tools)
        out.append({"index": i, "message": message,
                    "logprobs": answer.chat_logprobs(c.logprobs), "finish_reason": finish})
    return {**head, "object": "chat.completion", "choices": out,
            "usage": choices_usage(choices)}


class ChatChoiceStream:
    """Turns one choice's chunks into chat deltas; holds a tool-call answer back."""

    def __init__(self, index: int, tools: ToolSpec | None,
                 lp: Callable[[Sequence[TokenLogprob]], Doc | None]) -> None:
        self.index = index
        self.tools = tools if tools is not None and tools.active else None
        self.holding: bool | None = None if self.tools and self.tools.choice == "auto" \
            else self.tools is not None
        self.started = False
        self.held: list[str] = []
        self.pending: list[TokenLogprob] = []
        self._lp = lp

    def _delta(self, delta: Doc, finish: str | None = None, logprobs: Doc | None = None) -> Doc:
        return {"index": self.index, "delta": delta, "logprobs": logprobs,
                "finish_reason": finish}

    def render(self, c: Chunk) -> list[Doc]:
        out = []
        if not self.started:
            out.append(self._delta({"role": "assistant", "content": ""}))
            self.started = True
        self.pending.extend(c.logprobs)
        if self.holding is None and c.text:
            self.holding = c.text.startswith(CALL_OPEN[0])  # the grammar's choice
        if self.holding:
            self.held.append(c.text)
        elif c.text:
            out.append(self._delta({"content": c.text}, None, self._take()))
        if c.finish_reason is None:
            return out
        finish: str | None = c.finish_reason
        if self.holding:
            text = "".join(self.held)
            content, calls = parse_calls(text)
            if calls:
                out.append(self._delta({"content": content, "tool_calls": [
                    call.wire(k) for k, call in enumerate(calls)]}, None, self._take()))
                finish = "tool_calls" if finish == "stop" else finish
            elif text:
                out.append(self._delta({"content": text}, None, self._take()))
        out.append(self._delta({}, finish, self._take()))
        return out

    def _take(self) -> Doc | None:
        entries, self.pending = self.pending, []
        return self._lp(entries) if entries else None


class ChatStream:
    """Streamed chat chunks of every choice."""

    def __init__(self, head: Doc, answer: Answer) -> None:
        self.head = {**head, "object": "chat.completion.chunk"}
        self.choices = [ChatChoiceStream(i, answer.features.tools, answer.chat_logprobs)
                        for i in range(answer.n)]

    def render(self, i: int, c: Chunk) -> list[Doc]:
        return [{**self.head, "choices": [d]} for d in self.choices[i].render(c)]

    def tail(self, used: dict[str, int]) -> list[Doc]:
        return [{**self.head, "choices": [], "usage": used}]
