"""The OpenAI embeddings wire format over an embedding model (pure: dicts in, dicts out).

``POST /v1/embeddings`` takes ``model``, ``input`` (a string or a list of strings),
``encoding_format`` (``float``, or ``base64``: the float32 little-endian bytes, which the
``openai`` client asks for by default) and ``user`` (accepted, unused). ``dimensions`` is
accepted only when it equals the model's own width: the packed models are not trained to be
truncated (Matryoshka), so a shorter vector would be a different, worse embedding. Token-id
inputs are refused: an embedding pack's public input is text. Every refusal is a
``FieldError`` naming the field.

The vectors are the embedding model's v2 output for the same texts (``text`` BYTES in,
``embedding`` FP32 out), so both APIs give the same numbers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmos.llm.openai_protocol import FieldError
from llmos.serving import wirejson

MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
ENCODINGS = ("float", "base64")
FIELDS = ("model", "input", "encoding_format", "dimensions", "user")


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    texts: tuple[str, ...]
    encoding_format: str = "float"
    dimensions: int | None = None


def _texts(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not raw:
        raise FieldError("input", "must be a string or a non-empty list of strings")
    if len(raw) > MAX_INPUTS:
        raise FieldError("input", f"has {len(raw)} items; at most {MAX_INPUTS} per request",
                         "split the inputs over several requests")
    if all(isinstance(x, str) for x in raw):
        return tuple(raw)
    if all(type(x) is int or (isinstance(x, list) and all(type(t) is int for t in x))
           for x in raw):
        raise FieldError("input", "token-id arrays are not supported",
                         "send the text itself: the model tokenizes it with its own tokenizer")
    raise FieldError("input", "must be a string or a list of strings")


def parse_request(doc: Mapping[str, Any]) -> EmbeddingsRequest:
    """A parsed JSON body -> EmbeddingsRequest, or FieldError naming the field."""
    unknown = sorted(k for k in doc if k not in FIELDS)
    if unknown:
        raise FieldError(unknown[0], "is not supported by /v1/embeddings",
                         f"its fields are {', '.join(FIELDS)}")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise FieldError("model", "is required (a string)", "GET /v1/models lists the models")
    if "input" not in doc:
        raise FieldError("input", "is required")
    encoding = doc.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ENCODINGS:
        raise FieldError("encoding_format", f"must be one of {', '.join(ENCODINGS)}, "
                         f"got {encoding!r}")
    dims = doc.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise FieldError("dimensions", f"must be a positive integer, got {dims!r}")
    user = doc.get("user")
    if user is not None and not isinstance(user, str):
        raise FieldError("user", "must be a string")
    return EmbeddingsRequest(model, _texts(doc["input"]), str(encoding), dims)


def check_dimensions(req: EmbeddingsRequest, width: int) -> None:
    if req.dimensions is not None and req.dimensions != width:
        raise FieldError("dimensions", f"model {req.model!r} gives {width}-dimensional "
                         f"vectors and cannot shorten them to {req.dimensions}",
                         f"leave dimensions out, or set it to {width}")


def _vector(row: np.ndarray, encoding: str, as_array: bool) -> list[float] | str | np.ndarray:
    if encoding == "base64":
        return base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode()
    floats = np.ascontiguousarray(row, np.float32)
    if as_array:  # for wirejson.dumps
        return floats
    values: list[float] = floats.tolist()
    return values


def response(model: str, vectors: np.ndarray, encoding: str,
             prompt_tokens: int, as_arrays: bool = False) -> dict[str, Any]:
    """The response document: one ``embedding`` object per input, in order, and usage.
    ``as_arrays``: float vectors stay numpy arrays, for ``wirejson.dumps``."""
    data = [{"object": "embedding", "index": i, "embedding": _vector(row, encoding, as_arrays)}
            for i, row in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


def response_bytes(model: str, vectors: np.ndarray, encoding: str,
                   prompt_tokens: int) -> bytes:
    """``response(...)`` as compact JSON, written by orjson (``wirejson.dumps``): each
    float the shortest text that reads back as the same float32, several times faster
    than ``json.dumps``; which still writes vectors holding NaN or Infinity, as clients
    of Python's json read them."""
    if not np.isfinite(vectors).all():
        return json.dumps(response(model, vectors, encoding, prompt_tokens),
                          separators=(",", ":")).encode()
    return wirejson.dumps(response(model, vectors, encoding, prompt_tokens, as_arrays=True))


def model_card(name: str, kind: str, created: int, **extra: Any) -> dict[str, Any]:
    """One entry of GET /v1/models: OpenAI's model object plus this server's ``kind``
    (``causal-lm``, ``embedding`` or ``tensor``) and what else a client may plan with."""
    return {"id": name, "object": "model", "created": created, "owned_by": "llmos",
            "kind": kind, **extra}
