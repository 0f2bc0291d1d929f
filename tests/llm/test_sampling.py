"""Sampling: greedy, temperature, top-k, top-p, and repeatability with a seed."""

from __future__ import annotations

import numpy as np
import pytest

from llmos.errors import BadRequestError
from llmos.llm.sampling import Sampler, SamplingParams, nucleus

LOGITS = np.log(np.array([0.05, 0.5, 0.3, 0.1, 0.05], dtype=np.float32))


def test_greedy_takes_the_largest_logit() -> None:
    assert Sampler(SamplingParams(temperature=0.0))(LOGITS) == 1
    assert Sampler(SamplingParams(temperature=1.0, top_k=1))(LOGITS) == 1


def test_same_seed_same_tokens_other_seed_other_tokens() -> None:
    def draw(seed: int) -> list[int]:
        s = Sampler(SamplingParams(temperature=1.0, seed=seed))
        return [s(LOGITS) for _ in range(50)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_draws_follow_the_distribution() -> None:
    s = Sampler(SamplingParams(temperature=1.0, seed=0))
    counts = np.bincount([s(LOGITS) for _ in range(4000)], minlength=5) / 4000
    assert np.allclose(counts, np.exp(LOGITS), atol=0.03)


def test_top_k_never_draws_outside_the_k_best() -> None:
    s = Sampler(SamplingParams(temperature=1.5, top_k=2, seed=1))
    assert {s(LOGITS) for _ in range(300)} == {1, 2}


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = np.exp(LOGITS.astype(np.float64))
    kept = nucleus(probs / probs.sum(), 0.75)
    assert set(np.flatnonzero(kept)) == {1, 2}
    assert kept.sum() == pytest.approx(1.0)
    s = Sampler(SamplingParams(temperature=1.0, top_p=0.75, seed=3))
    assert {s(LOGITS) for _ in range(300)} == {1, 2}


def test_low_temperature_sharpens() -> None:
    s = Sampler(SamplingParams(temperature=0.05, seed=2))
    assert {s(LOGITS) for _ in range(100)} == {1}


@pytest.mark.parametrize("kwargs", [{"temperature": -0.1}, {"temperature": 2.5},
                                    {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -1}])
def test_out_of_range_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(BadRequestError):
        SamplingParams(**kwargs)  # type: ignore[arg-type]
