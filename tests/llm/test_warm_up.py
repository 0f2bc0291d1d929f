"""Before a causal LM is READY it runs once: one token on the CPU, every step kind on a GPU."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from llmos.llm.decoder import Decoder
from llmos.llm.model import warm_up


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
