"""The OpenAI embeddings wire format (pure): ``POST /v1/embeddings`` in, its answer out.

``input`` is a string or a list of strings (token-id inputs are refused: the embedding
models here take text); ``encoding_format`` ``float`` (the default) or ``base64`` (the
float32 vector's little-endian bytes, as OpenAI's clients decode them); ``user`` is
accepted; ``dimensions`` only where it is the model's own (no truncated embeddings).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmos.llm.openai_fields import FieldError

MAX_INPUTS = 2048  # OpenAI's bound on a list input
FORMATS = ("float", "base64")
FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    texts: tuple[str, ...]
    encoding_format: str = "float"
    dimensions: int | None = None


def embeddings_request(doc: Mapping[str, Any]) -> EmbeddingsRequest:
    unknown = sorted(k for k in doc if k not in FIELDS)
    if unknown:
        raise FieldError(unknown[0], "is not a field this server knows",
                         f"leave {unknown[0]!r} out")
    model = doc.get("model")
    if not isinstance(model, str) or not model:
        raise FieldError("model", "is required and must be a string",
                         "GET /v1/models lists the models and their kinds")
    raw = doc.get("input")
    if isinstance(raw, str):
        texts: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        texts = tuple(raw)
    else:
        raise FieldError("input", "must be a string or a non-empty list of strings "
                         "(token ids are not supported)", "send the text itself")
    if len(texts) > MAX_INPUTS:
        raise FieldError("input", f"at most {MAX_INPUTS} inputs, got {len(texts)}")
    fmt = doc.get("encoding_format") or "float"
    if fmt not in FORMATS:
        raise FieldError("encoding_format", f"must be float or base64, got {json.dumps(fmt)}")
    dims = doc.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise FieldError("dimensions", f"must be a positive integer, got {json.dumps(dims)}")
    return EmbeddingsRequest(model, texts, fmt, dims)


def _vector(row: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(row, dtype="<f4").tobytes()).decode()
    return [float(x) for x in row]


def embeddings_response(req: EmbeddingsRequest, vectors: np.ndarray,
                        tokens: int) -> dict[str, Any]:
    """The answer; FieldError when ``dimensions`` asks for another size than the model's."""
    if req.dimensions is not None and req.dimensions != vectors.shape[1]:
        raise FieldError("dimensions", f"model {req.model!r} gives {vectors.shape[1]} "
                         f"dimensions, not {req.dimensions}", "leave dimensions out")
    return {"object": "list", "model": req.model,
            "data": [{"object": "embedding", "index": i,
                      "embedding": _vector(row, req.encoding_format)}
                     for i, row in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_cards(models: Sequence[tuple[str, str, int, int | None]]) -> dict[str, Any]:
    """``/v1/models``: (name, kind, created, context length or None) of each served model."""
    cards = []
    for name, kind, created, context in models:
        card: dict[str, Any] = {"id": name, "object": "model", "created": created,
                                "owned_by": "llmos", "kind": kind}
        if context is not None:
            card["max_model_len"] = context
        cards.append(card)
    return {"object": "list", "data": cards}
