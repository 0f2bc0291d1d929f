"""Token log-probabilities, and their OpenAI wire shapes (pure).

The engine records, per generated token, a ``TokenLogprob``: the chosen token's
log-probability and the ``k`` most likely alternatives, all taken from the distribution
the token was drawn from (``llmos.llm.decoding``). The web edge turns them into OpenAI's
chat shape (``{"content": [{token, logprob, bytes, top_logprobs}]}``) or the legacy
completions shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``) with a
``TokenTexts`` table: each token id's text and exact bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TOP_LOGPROBS = 20  # OpenAI's bound for chat; completions allow 5
_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token id, logprob), most likely first


def top_alternatives(logp: np.ndarray, k: int) -> tuple[tuple[int, float], ...]:
    """The ``k`` most likely tokens of a log-probability row, most likely first; tokens
    that cannot be drawn (-inf: masked or filtered out) are never listed."""
    if k <= 0:
        return ()
    k = min(k, logp.size)
    idx = np.argpartition(logp, -k)[-k:]
    idx = idx[np.argsort(-logp[idx], kind="stable")]
    return tuple((int(i), float(logp[i])) for i in idx if np.isfinite(logp[i]))


def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's byte-level alphabet (each byte shown as a printable char)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class TokenTexts:
    """Token id -> (text, bytes), from the tokenizer's ``tokenizer.json``.

    Byte-level BPE vocabularies (GPT-2 style, as SmolLM2's) map back to exact bytes; a token
    that is only part of a UTF-8 character has text with U+FFFD but its true bytes, as
    OpenAI's ``bytes`` field intends. Other vocabularies use the token's spelling, with
    SentencePiece's word marker as a space and its ``<0xNN>`` byte-fallback pieces as
    that byte."""

    def __init__(self, tokenizer_json: str) -> None:
        doc = json.loads(tokenizer_json)
        model = doc.get("model") or {}
        vocab: dict[str, int] = dict(model.get("vocab") or {})
        specials: set[int] = set()
        for added in doc.get("added_tokens") or []:
            vocab[added["content"]] = int(added["id"])
            specials.add(int(added["id"]))
        decoder = doc.get("decoder") or {}
        byte_level = decoder.get("type") == "ByteLevel" or any(
            d.get("type") == "ByteLevel" for d in decoder.get("decoders") or [])
        table = _byte_decoder() if byte_level else {}
        size = max(vocab.values(), default=-1) + 1
        self._bytes: list[bytes] = [b""] * size
        for piece, i in vocab.items():
            if not byte_level and _BYTE_PIECE.fullmatch(piece):
                raw = bytes([int(piece[3:5], 16)])  # SentencePiece byte fallback
            elif i in specials or not byte_level or any(c not in table for c in piece):
                raw = piece.replace("\u2581", " ").encode()
            else:
                raw = bytes(table[c] for c in piece)
            self._bytes[i] = raw

    def bytes_of(self, token_id: int) -> bytes:
        return self._bytes[token_id] if 0 <= token_id < len(self._bytes) else b""

    def text_of(self, token_id: int) -> str:
        return self.bytes_of(token_id).decode("utf-8", errors="replace")


def _entry(texts: TokenTexts, token_id: int, logprob: float) -> dict[str, Any]:
    return {"token": texts.text_of(token_id), "logprob": logprob,
            "bytes": list(texts.bytes_of(token_id))}


def chat_content(entries: Sequence[TokenLogprob], texts: TokenTexts) -> list[dict[str, Any]]:
    """OpenAI chat ``logprobs.content`` items, one per token."""
    return [{**_entry(texts, e.token_id, e.logprob),
             "top_logprobs": [_entry(texts, t, lp) for t, lp in e.top]} for e in entries]


def completion_logprobs(entries: Sequence[TokenLogprob], texts: TokenTexts,
                        offset: int = 0) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object; ``offset``: characters before these
    tokens in the choice's text."""
    tokens, offsets = [], []
    for e in entries:
        offsets.append(offset)
        text = texts.text_of(e.token_id)
        tokens.append(text)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": [e.logprob for e in entries],
            "top_logprobs": [{texts.text_of(t): lp for t, lp in e.top} for e in entries],
            "text_offset": offsets}
