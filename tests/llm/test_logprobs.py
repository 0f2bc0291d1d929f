"""Token texts and the OpenAI shapes of log-probabilities (pure)."""

from __future__ import annotations

import json

from llmos.llm.logprobs import TokenLogprob, TokenTexts, chat_content, completion_logprobs

# A byte-level vocabulary as GPT-2/SmolLM2 write it: "Ġ" is a space, "Ã" + "©" is "é".
TOKENIZER = json.dumps({
    "model": {"type": "BPE", "vocab": {"Hello": 0, "Ġworld": 1, "Ã": 2, "©": 3, "Ã©": 4}},
    "added_tokens": [{"id": 5, "content": "<|im_end|>"}],
    "decoder": {"type": "ByteLevel"},
})


def test_byte_level_tokens_map_back_to_their_bytes() -> None:
    t = TokenTexts(TOKENIZER)
    assert t.text_of(1) == " world"
    assert t.bytes_of(4) == "é".encode()
    assert t.bytes_of(2) == b"\xc3"  # half a character: true bytes...
    assert t.text_of(2) == "\ufffd"  # ...and a replacement character as text
    assert t.text_of(5) == "<|im_end|>"
    assert t.bytes_of(99) == b""


def test_chat_and_completion_shapes() -> None:
    t = TokenTexts(TOKENIZER)
    entries = [TokenLogprob(0, -0.1, ((0, -0.1), (1, -2.5))), TokenLogprob(1, -0.2, ())]
    chat = chat_content(entries, t)
    assert chat[0] == {"token": "Hello", "logprob": -0.1, "bytes": list(b"Hello"),
                       "top_logprobs": [
                           {"token": "Hello", "logprob": -0.1, "bytes": list(b"Hello")},
                           {"token": " world", "logprob": -2.5, "bytes": list(b" world")}]}
    legacy = completion_logprobs(entries, t, offset=3)
    assert legacy == {"tokens": ["Hello", " world"], "token_logprobs": [-0.1, -0.2],
                      "top_logprobs": [{"Hello": -0.1, " world": -2.5}, {}],
                      "text_offset": [3, 8]}


def test_sentencepiece_pieces_and_byte_fallback() -> None:
    t = TokenTexts(json.dumps({"model": {"type": "BPE", "vocab": {
        "\u2581the": 0, "<0x0A>": 1, "<0xC3>": 2}}, "decoder": {"type": "Sequence",
                                                           "decoders": [{"type": "Replace"}]}}))
    assert t.text_of(0) == " the"
    assert t.bytes_of(1) == b"\n" and t.bytes_of(2) == b"\xc3"
