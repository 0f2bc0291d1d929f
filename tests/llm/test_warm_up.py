"""Before a causal LM is READY it runs once: one token on the CPU, every step kind on a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest

from llmos.llm.decoder import Decoder
from llmos.llm.model import warm_up
from llmos.llm.prefixcache import PrefixCache
from llmos.pack.llm.architecture import DecoderSpec


@dataclass
class _Layout:
    slots: int


@dataclass
class _RecordingDecoder:
    slots: int
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def layout(self) -> _Layout:
        return _Layout(self.slots)

    def prefill(self, slot: int, token_ids: Sequence[int]) -> None:
        self.calls.append(("prefill", slot, len(token_ids)))

    def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> None:
        self.calls.append(("decode", len(tokens), tuple(lengths)))


def test_on_the_cpu_one_token_runs_once() -> None:
    decoder = _RecordingDecoder(slots=8)
    warm_up(cast(Decoder, decoder), "cpu")
    assert decoder.calls == [("prefill", 0, 1)]


@pytest.mark.parametrize(("slots", "rows"), [(8, [1, 2]), (1, [1])])
def test_on_a_gpu_each_step_kind_runs(slots: int, rows: list[int]) -> None:
    decoder = _RecordingDecoder(slots=slots)
    warm_up(cast(Decoder, decoder), "cuda:0")
    assert decoder.calls == [("prefill", 0, 2)] + [("decode", n, (2,) * n) for n in rows]


def test_a_model_that_cannot_run_fails_its_warm_up() -> None:
    class Broken(_RecordingDecoder):
        def prefill(self, slot: int, token_ids: Sequence[int]) -> None:
            raise RuntimeError("bad graph")

    with pytest.raises(RuntimeError, match="bad graph"):
        warm_up(cast(Decoder, Broken(slots=8)), "cpu")


class _IdleBinding:
    def bind_input(self, *args: Any) -> None:
        pass

    def bind_output(self, *args: Any) -> None:
        pass


class _IdleSession:
    """Binds and runs nothing: the decoder's own code around the session is what runs."""

    def io_binding(self) -> _IdleBinding:
        return _IdleBinding()

    def run_with_iobinding(self, iobinding: Any, run_options: Any = None) -> None:
        pass


@pytest.mark.parametrize("device", ["cpu", "cuda:0"])
def test_the_warm_up_puts_nothing_in_the_prefix_cache(device: str) -> None:
    spec = DecoderSpec(vocab_size=8, hidden_size=4, intermediate_size=8, num_layers=1,
                       num_heads=1, num_kv_heads=1, head_dim=2, rms_norm_eps=1e-5,
                       rope_theta=1e4, max_positions=16, tie_word_embeddings=True,
                       attention_bias=False)
    prefix: PrefixCache[np.ndarray] = PrefixCache(block_tokens=1, budget_bytes=1 << 20)
    warm_up(Decoder(_IdleSession(), spec, slots=2, capacity=16, prefix=prefix), device)
    assert len(prefix) == 0 and prefix.bytes == 0
