"""The OpenAI completions and chat-completions wire format (pure: dicts in, dicts out).

Requests are validated field by field; a malformed one raises ``FieldError`` (a
``BadRequestError`` that names the field, answered 400). Fields this server does not
implement are refused when they would change the answer (``echo``, ``logit_bias``,
``best_of``, audio...) and accepted when they would not (``user``, ``metadata``); a field
this server does not know at all is refused too, naming it, never ignored. The fields
that steer the choice of tokens (``n``, penalties, log-probabilities, structured output,
tools) are parsed by ``llmos.llm.openai_features``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmos.errors import BadRequestError
from llmos.llm import openai_features as features
from llmos.llm.chat import ROLES, Message
from llmos.llm.openai_fields import FieldError as FieldError  # re-exported
from llmos.llm.sampling import SamplingParams
from llmos.serving import wirejson

MAX_STOP = 4
#: Every field each endpoint knows; any other is a 400 that names it.
_COMMON = frozenset({
    "model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stream",
    "stream_options", "ignore_eos", "n", "presence_penalty", "frequency_penalty", "logprobs",
    "logit_bias", "best_of", "user", "metadata", "store", "service_tier"})
COMPLETION_FIELDS = _COMMON | {"prompt", "echo", "suffix"}
CHAT_FIELDS = _COMMON | {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools",
    "tool_choice", "parallel_tool_calls", "functions", "function_call", "audio", "modalities",
    "prediction", "web_search_options"}
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


@dataclass(frozen=True)
class CompletionParams:
    """What both endpoints share once parsed."""

    model: str
    max_tokens: int | None  # None: up to the server's cap and the context
    sampling: SamplingParams
    stop: tuple[str, ...]
    stream: bool
    include_usage: bool  # stream_options.include_usage
    ignore_eos: bool = False  # vLLM's extension, for benchmarks


@dataclass(frozen=True)
class CompletionRequest:
    params: CompletionParams
    prompt: str | tuple[int, ...]  # text, or token ids
    features: features.Features = field(default_factory=features.Features)


@dataclass(frozen=True)
class ChatRequest:
    params: CompletionParams
    messages: tuple[Message, ...]
    features: features.Features = field(default_factory=features.Features)


def parse_body(body: bytes) -> Mapping[str, Any]:
    doc = wirejson.loads(body)  # strict: NaN, lone surrogates, deep nesting are refused
    if not isinstance(doc, dict):
        raise BadRequestError("request body must be a JSON object",
                              "send {\"model\": ..., ...}")
    return doc


def _number(doc: Mapping[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = doc.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise FieldError(key, f"must be a number, got {json.dumps(v)}")
    if not lo <= v <= hi:
        raise FieldError(key, f"must be between {lo} and {hi}, got {v}")
    return float(v)


def _int(doc: Mapping[str, Any], key: str, lo: int | None = None) -> int | None:
    v = doc.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise FieldError(key, f"must be an integer, got {json.dumps(v)}")
    if lo is not None and v < lo:
        raise FieldError(key, f"must be >= {lo}, got {v}")
    return v


def _bool(doc: Mapping[str, Any], key: str) -> bool:
    v = doc.get(key, False)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise FieldError(key, f"must be true or false, got {json.dumps(v)}")
    return v


def _stop(doc: Mapping[str, Any]) -> tuple[str, ...]:
    v = doc.get("stop")
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise FieldError("stop", "must be a non-empty string or a list of them")
    if len(v) > MAX_STOP:
        raise FieldError("stop", f"at most {MAX_STOP} stop sequences, got {len(v)}")
    return tuple(v)


def _refuse(doc: Mapping[str, Any], key: str, allowed: tuple[Any, ...], what: str) -> None:
    if key in doc and doc[key] not in allowed:
        raise FieldError(key, f"{what} is not supported by this server, got "
                         f"{json.dumps(doc[key])}", f"leave {key!r} out")


def _params(doc: Mapping[str, Any], max_tokens_key: tuple[str, ...],
            default_max_tokens: int | None) -> CompletionParams:
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise FieldError("model", "is required and must be a string",
                         "GET /v1/models lists the models")
    _refuse(doc, "best_of", (None, 1), "best_of > 1")
    _refuse(doc, "logit_bias", (None, {}), "logit_bias")
    max_tokens: int | None = default_max_tokens
    for key in max_tokens_key:
        given = _int(doc, key, 1)
        if given is not None:
            max_tokens = given
            break
    top_k = _int(doc, "top_k", -1)
    seed = _int(doc, "seed", -(2**63))
    if seed is not None and seed >= 2**63:
        raise FieldError("seed", f"must be a 64-bit signed integer, got {seed}")
    sampling = SamplingParams(
        temperature=_number(doc, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(doc, "top_p", 1.0, 0.0, 1.0) or 1e-9,
        top_k=0 if top_k is None or top_k < 0 else top_k,
        seed=seed,
    )
    options = doc.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise FieldError("stream_options", "must be an object")
    include_usage = _bool(options or {}, "include_usage")
    return CompletionParams(model, max_tokens, sampling, _stop(doc), _bool(doc, "stream"),
                            include_usage, _bool(doc, "ignore_eos"))


def _known(doc: Mapping[str, Any], fields: frozenset[str]) -> None:
    unknown = sorted(k for k in doc if k not in fields)
    if unknown:
        raise FieldError(unknown[0], "is not a field this server knows",
                         f"leave {unknown[0]!r} out (the supported fields: "
                         "docs/openai-features.md)")


def completion_request(doc: Mapping[str, Any]) -> CompletionRequest:
    _known(doc, COMPLETION_FIELDS)
    _refuse(doc, "echo", (None, False), "echo")
    _refuse(doc, "suffix", (None, ""), "suffix")
    params = _params(doc, ("max_tokens",), COMPLETIONS_DEFAULT_MAX_TOKENS)
    extra = features.completion_features(doc)
    prompt = doc.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return CompletionRequest(params, prompt, extra)
    if isinstance(prompt, list) and prompt and all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in prompt):
        return CompletionRequest(params, tuple(prompt), extra)
    raise FieldError("prompt", "must be a string (or a list of token ids); batches of prompts "
                     "are not supported", "send one prompt per request")


def _content(index: int, raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        parts: list[str] = []
        for part in raw:
            if not isinstance(part, dict) or part.get("type") != "text" \
                    or not isinstance(part.get("text"), str):
                raise FieldError(f"messages[{index}].content",
                                 "only text parts ({\"type\": \"text\", \"text\": ...}) are "
                                 "supported")
            parts.append(part["text"])
        return "".join(parts)
    if raw is None:
        return ""
    raise FieldError(f"messages[{index}].content", "must be a string or a list of text parts")


def chat_request(doc: Mapping[str, Any]) -> ChatRequest:
    _known(doc, CHAT_FIELDS)
    for key in ("audio", "prediction", "web_search_options", "function_call"):
        _refuse(doc, key, (None,), key)
    _refuse(doc, "modalities", (None, ["text"]), "output other than text")
    params = _params(doc, ("max_completion_tokens", "max_tokens"), None)
    extra = features.chat_features(doc)
    raw = doc.get("messages")
    if not isinstance(raw, list) or not raw:
        raise FieldError("messages", "is required: a non-empty list of {role, content}")
    messages: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict):
            raise FieldError(f"messages[{i}]", "must be an object with role and content")
        role = m.get("role")
        if role not in ROLES:
            raise FieldError(f"messages[{i}].role", f"must be one of {', '.join(ROLES)}, "
                             f"got {json.dumps(role)}")
        messages.append(features.tool_message(i, m, role, _content(i, m.get("content"))))
    return ChatRequest(params, tuple(messages), extra)


# --- responses ------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
