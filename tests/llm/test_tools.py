"""The tool-calling convention: prompts, grammars and parsing the calls back (pure)."""

from __future__ import annotations

import json

import pytest

from llmos.llm import openai_protocol as proto
from llmos.llm.chat import ChatTemplate, Message
from llmos.llm.tools import (
    Function,
    ToolSpec,
    parse_calls,
    prompt_text,
    render_calls,
    tool_grammar,
    with_tools,
)

ADD = Function("add", "Adds.", {"type": "object", "properties": {"a": {"type": "integer"}}})
NEG = Function("neg", "Negates.", {"type": "object", "properties": {"x": {"type": "number"}}})


def test_calls_are_parsed_back_with_the_text_around_them() -> None:
    text = 'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    content, calls = parse_calls(text)
    assert content == "Sure."
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 1})]
    assert calls[0].id.startswith("call_")
    assert calls[0].wire(0)["function"] == {"name": "add", "arguments": '{"a": 1}'}


def test_a_call_cut_short_stays_text() -> None:
    text = '<tool_call>\n{"name": "add", "argu'
    assert parse_calls(text) == (text, ())


def test_rendered_calls_parse_back() -> None:
    rendered = render_calls("", [("add", {"a": 2}), ("neg", {"x": 1.5})])
    _, calls = parse_calls(rendered)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("add", {"a": 2}),
                                                                  ("neg", {"x": 1.5})]


def test_tools_go_into_the_system_message() -> None:
    spec = ToolSpec((ADD, NEG), "function", "neg")
    out = with_tools([Message("system", "Be brief."), Message("user", "hi")], spec)
    assert out[0].role == "system" and out[0].content.startswith("Be brief.")
    assert '"neg"' in out[0].content and '"add"' not in out[0].content  # only the named one
    assert with_tools([Message("user", "hi")], ToolSpec((ADD,), "none")) == (
        Message("user", "hi"),)
    assert with_tools([Message("user", "hi")], ToolSpec((ADD,)))[0].role == "system"


def test_grammar_shapes() -> None:
    required = tool_grammar(ToolSpec((ADD, NEG), "required"))
    assert required.startswith("start: calls\n")
    assert 'calls: call ("\\n" call)?' in required  # at most one call per function
    named = tool_grammar(ToolSpec((ADD, NEG), "function", "add"))
    assert "calls: call\n" in named and '"neg"' not in named
    auto = tool_grammar(ToolSpec((ADD,), "auto"), {"type": "object"})
    assert auto.startswith("start: calls | answer") and "answer: %json" in auto
    single = tool_grammar(ToolSpec((ADD, NEG), "required", parallel=False))
    assert "calls: call\n" in single


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
# A template with its own tool syntax, in the way of Qwen2.5's.
NATIVE = ("{% if tools %}TOOLS:{% for t in tools %}{{ t.function.name }};{% endfor %}\n"
          "{% endif %}{% for m in messages %}{{ m.role }}:"
          "{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }} "
          "{{ c.function.arguments | tojson }}{% endfor %}"
          "{% elif m.role == 'tool' %}RESULT {{ m.content }}"
          "{% else %}{{ m.content }}{% endif %}\n{% endfor %}")

CONVERSATION = {"model": "m", "tools": [
    {"type": "function", "function": {"name": "add", "parameters": ADD.parameters}}],
    "messages": [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "add", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "2"}]}


def test_a_template_without_tools_gets_the_convention() -> None:
    req = proto.chat_request(CONVERSATION)
    assert req.messages[1].tool_calls[0]["function"]["arguments"] == {"a": 1}
    assert req.messages[2].tool_call_id == "c1"
    template = ChatTemplate(CHATML)
    assert not template.speaks_tools
    prompt = prompt_text(template, req.messages, req.features.tools)
    assert prompt.startswith("<|im_start|>system\nYou can call functions.")
    assert '{"name": "add", "arguments": {"a": 1}}' in prompt
    assert "<|im_start|>tool\n<tool_response>\n2\n</tool_response><|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # tool_choice none: the tools are not offered, the history still reads the same
    none = proto.chat_request({**CONVERSATION, "tool_choice": "none"})
    quiet = prompt_text(template, none.messages, none.features.tools)
    assert "You can call functions" not in quiet and "<tool_response>" in quiet


def test_a_template_with_tools_renders_them_itself() -> None:
    req = proto.chat_request(CONVERSATION)
    template = ChatTemplate(NATIVE)
    assert template.speaks_tools
    assert prompt_text(template, req.messages, req.features.tools) == (
        'TOOLS:add;user:1+1?assistant:CALL add {"a": 1}tool:RESULT 2')  # trim_blocks


@pytest.mark.parametrize(("doc", "n", "top", "penalties"), [
    ({"n": 3, "presence_penalty": 1, "frequency_penalty": -0.5}, 3, None, (1.0, -0.5)),
    ({"logprobs": True}, 1, 0, (0.0, 0.0)),
    ({"logprobs": True, "top_logprobs": 4}, 1, 4, (0.0, 0.0)),
])
def test_chat_features_parse(doc: dict[str, object], n: int, top: int | None,
                             penalties: tuple[float, float]) -> None:
    f = proto.chat_request({"model": "m", "messages": [{"role": "user", "content": "x"}],
                            **doc}).features
    assert (f.n, f.top_logprobs, (f.penalties.presence, f.penalties.frequency)) == (
        n, top, penalties)


def test_response_formats() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    obj = proto.chat_request({**base, "response_format": {"type": "json_object"}})
    assert obj.features.json_schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    strict = proto.chat_request({**base, "response_format": {
        "type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}}})
    assert strict.features.json_schema == schema
    assert proto.chat_request({**base, "response_format": {"type": "text"}}
                              ).features.json_schema is None
