"""Parsing OpenAI requests: defaults, refusals naming the field, and response shapes."""

from __future__ import annotations

from typing import Any

import pytest

from llmos.errors import BadRequestError
from llmos.llm import openai_protocol as proto


def test_completion_defaults_follow_openai() -> None:
    req = proto.completion_request({"model": "m", "prompt": "Hi"})
    p = req.params
    assert req.prompt == "Hi"
    assert p.max_tokens == proto.COMPLETIONS_DEFAULT_MAX_TOKENS
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.seed) == (1.0, 1.0, None)
    assert (p.stop, p.stream, p.include_usage) == ((), False, False)


def test_completion_fields_are_read() -> None:
    req = proto.completion_request({
        "model": "m", "prompt": ["Hi"], "max_tokens": 5, "temperature": 0, "top_p": 0.5,
        "seed": 3, "stop": "\n", "stream": True, "stream_options": {"include_usage": True},
        "n": 1, "user": "ignored"})
    p = req.params
    assert (req.prompt, p.max_tokens, p.stop, p.stream, p.include_usage) == \
        ("Hi", 5, ("\n",), True, True)
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.seed) == (0.0, 0.5, 3)
    assert proto.completion_request({"model": "m", "prompt": [1, 2, 3]}).prompt == (1, 2, 3)


def test_chat_takes_max_completion_tokens_and_text_parts() -> None:
    req = proto.chat_request({
        "model": "m", "max_completion_tokens": 7,
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "a"},
                                                  {"type": "text", "text": "b"}]}]})
    assert req.params.max_tokens == 7
    assert [(m.role, m.content) for m in req.messages] == [("system", "Be brief."),
                                                          ("user", "ab")]
    assert proto.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}]}
                              ).params.max_tokens is None


@pytest.mark.parametrize(("doc", "field"), [
    ({"prompt": "x"}, "model"),
    ({"model": "m"}, "prompt"),
    ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
    ({"model": "m", "prompt": "x", "n": 0}, "n"),
    ({"model": "m", "prompt": "x", "n": 99}, "n"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "prompt": "x", "max_tokens": "5"}, "max_tokens"),
    ({"model": "m", "prompt": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "prompt": "x", "top_p": True}, "top_p"),
    ({"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"model": "m", "prompt": "x", "stop": [1]}, "stop"),
    ({"model": "m", "prompt": "x", "stream": "yes"}, "stream"),
    ({"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
    ({"model": "m", "prompt": "x", "logprobs": True}, "logprobs"),
    ({"model": "m", "prompt": "x", "best_of": 2}, "best_of"),
    ({"model": "m", "prompt": "x", "logit_bias": {"1": 5}}, "logit_bias"),
    ({"model": "m", "prompt": "x", "echo": True}, "echo"),
    ({"model": "m", "prompt": "x", "presence_penalty": 2.5}, "presence_penalty"),
    ({"model": "m", "prompt": "x", "frequency_penalty": "1"}, "frequency_penalty"),
    ({"model": "m", "prompt": "x", "seed": 1.5}, "seed"),
])
def test_malformed_completion_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(proto.FieldError) as info:
        proto.completion_request(doc)
    assert info.value.param == field
    assert field in info.value.message


@pytest.mark.parametrize(("doc", "field"), [
    ({"model": "m"}, "messages"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": ["hi"]}, "messages[0]"),
    ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
     "tools[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "xml"}}, "response_format"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
     "response_format.json_schema"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
     "top_logprobs"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "logprobs": True,
      "top_logprobs": 21}, "top_logprobs"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"},
     "tool_choice"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "audio": {"voice": "x"}},
     "audio"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "modalities": ["text", "audio"]}, "modalities"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "functions": [{}]},
     "functions"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
    ({"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{x"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
])
def test_malformed_chat_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(proto.FieldError) as info:
        proto.chat_request(doc)
    assert info.value.param == field


def test_body_must_be_a_json_object() -> None:
    with pytest.raises(BadRequestError):
        proto.parse_body(b"{nope")
    with pytest.raises(BadRequestError):
        proto.parse_body(b"[1, 2]")
    with pytest.raises(BadRequestError, match="nested deeper"):  # not a RecursionError
        proto.parse_body(b"[" * 100_000)
    assert proto.parse_body(b'{"model": "m"}') == {"model": "m"}


@pytest.mark.parametrize(("parse", "doc"), [
    (proto.completion_request, {"model": "m", "prompt": "x", "min_p": 0.1}),
    (proto.chat_request, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "reasoning_effort": "high"}),
    (proto.chat_request, {"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "repetition_penalty": 1.2}),
])
def test_unknown_fields_are_refused_by_name(parse: Any, doc: dict[str, Any]) -> None:
    """A field this server does not know would be silently ignored otherwise."""
    unknown = (set(doc) - {"model", "prompt", "messages"}).pop()
    with pytest.raises(proto.FieldError) as info:
        parse(doc)
    assert info.value.param == unknown


def test_known_fields_that_do_not_change_the_answer_are_accepted() -> None:
    doc = {"model": "m", "messages": [{"role": "user", "content": "x"}], "user": "u",
           "metadata": {"k": "v"}, "store": False, "service_tier": "auto"}
    assert proto.chat_request(doc).messages[0].content == "x"
