"""The golden file: one request per model that a new version must answer to be kept (pure).

Written at build time by ``llmos golden`` from the very packs the image carries, read by
``llmos health-gate`` on the first boots of a new version::

    {"format": 1,
     "models": [
       {"name": "minilm", "kind": "embedding", "endpoint": "v2", "input": "text",
        "output": "embedding", "text": "...", "vector": [0.01, ...], "min_cosine": 0.995},
       {"name": "smollm2", "kind": "chat", "prompt": "...", "max_tokens": 8}]}

An ``embedding`` entry is answered through ``POST /v2/models/NAME/infer`` (``endpoint``
"v2": the ``input`` BYTES tensor, the ``output`` tensor read back) or ``/v1/embeddings``
("openai"); its vector must be within ``min_cosine`` of the reference. A ``chat`` entry is
a greedy ``/v1/chat/completions`` that must answer (200, some content, a finish reason).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

FORMAT = 1
#: The same int8 model on another CPU computes other numbers (onnxruntime picks its kernels by
#: the CPU's features): 0.9985-0.9998 in cosine seen between the build host and a CPU
#: without FMA. The gate tells a model that works from one that does not, not kernels apart.
MIN_COSINE = 0.995
# Enough to show the model answers; few, so that a slow machine (an emulated one under
# load) answers within the server deadline too.
CHAT_MAX_TOKENS = 8
#: Fixed texts: the same at every build, so a golden file changes only with its models.
EMBEDDING_TEXT = "The appliance serves sealed models from memory only."
CHAT_PROMPT = "What is the capital of France? Answer in one word."
ENDPOINTS = ("v2", "openai")


@dataclass(frozen=True)
class EmbeddingCheck:
    name: str
    text: str
    vector: tuple[float, ...]
    endpoint: str = "v2"
    input: str = "text"
    output: str = "embedding"
    min_cosine: float = MIN_COSINE
    kind: ClassVar[str] = "embedding"


@dataclass(frozen=True)
class ChatCheck:
    name: str
    prompt: str
    max_tokens: int = CHAT_MAX_TOKENS
    kind: ClassVar[str] = "chat"


Check = EmbeddingCheck | ChatCheck


def check_kind(model_kind: str, inputs: Sequence[tuple[str, str]]) -> str | None:
    """How a model is checked, from its manifest: "chat" for a causal LM, "embedding" for
    an embedding model or a tensor model with one BYTES (text) input, None otherwise."""
    if model_kind == "causal-lm":
        return "chat"
    if model_kind == "embedding":
        return "embedding"
    if model_kind == "tensor" and len(inputs) == 1 and inputs[0][1] == "BYTES":
        return "embedding"
    return None


def to_dict(check: Check) -> dict[str, Any]:
    if isinstance(check, ChatCheck):
        return {"name": check.name, "kind": check.kind, "prompt": check.prompt,
                "max_tokens": check.max_tokens}
    return {"name": check.name, "kind": check.kind, "endpoint": check.endpoint,
            "input": check.input, "output": check.output, "text": check.text,
            "vector": list(check.vector), "min_cosine": check.min_cosine}


def dumps(checks: Sequence[Check]) -> str:
    return json.dumps({"format": FORMAT, "models": [to_dict(c) for c in checks]}) + "\n"


def _entry(e: Any, i: int) -> Check:
    if not isinstance(e, Mapping) or not isinstance(e.get("name"), str) or not e["name"]:
        raise ValueError(f"models[{i}] is not an object with a name")
    if e.get("kind") == "chat":
        return ChatCheck(e["name"], str(e["prompt"]), int(e.get("max_tokens", CHAT_MAX_TOKENS)))
    if e.get("kind") != "embedding":
        raise ValueError(f"models[{i}] ({e['name']}): unknown kind {e.get('kind')!r}")
    vector = tuple(float(x) for x in e["vector"])
    if not vector or not all(math.isfinite(x) for x in vector) or not any(vector):
        raise ValueError(f"models[{i}] ({e['name']}): the reference vector is empty or bad")
    endpoint = str(e.get("endpoint", "v2"))
    if endpoint not in ENDPOINTS:
        raise ValueError(f"models[{i}] ({e['name']}): endpoint {endpoint!r} is not one of "
                         f"{', '.join(ENDPOINTS)}")
    return EmbeddingCheck(e["name"], str(e["text"]), vector, endpoint,
                          str(e.get("input", "text")), str(e.get("output", "embedding")),
                          float(e.get("min_cosine", MIN_COSINE)))


def loads(text: str) -> tuple[Check, ...]:
    """The checks of a golden file; ValueError saying what is wrong with it."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(doc, Mapping) or doc.get("format") != FORMAT:
        raise ValueError(f"not a golden file of format {FORMAT}")
    models = doc.get("models")
    if not isinstance(models, list) or not models:
        raise ValueError("it lists no models")
    try:
        return tuple(_entry(e, i) for i, e in enumerate(models))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"an entry lacks {exc}") from exc
