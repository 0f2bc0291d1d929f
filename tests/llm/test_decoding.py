"""Per-sequence token choice: penalties, grammar masks and log-probabilities (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmos.errors import BadRequestError
from llmos.llm.decoding import Penalties, TokenChooser, log_softmax
from llmos.llm.logprobs import top_alternatives
from llmos.llm.sampling import Sampler, SamplingParams

LOGITS = np.log(np.array([0.05, 0.5, 0.3, 0.1, 0.05], dtype=np.float32))
GREEDY = SamplingParams(temperature=0.0)


class OnlyEven:
    """A constraint that allows the even token ids, and records what it was given."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def allowed(self, vocab_size: int, remaining: int | None = None) -> np.ndarray:
        return np.arange(vocab_size) % 2 == 0

    def advance(self, token_id: int) -> None:
        self.seen.append(token_id)


class Nothing(OnlyEven):
    def allowed(self, vocab_size: int, remaining: int | None = None) -> np.ndarray:
        return np.zeros(vocab_size, bool)


def test_plain_choice_draws_exactly_as_the_sampler() -> None:
    for params in (GREEDY, SamplingParams(temperature=0.9, top_p=0.8, top_k=4, seed=3)):
        a, b = Sampler(params), TokenChooser(params)
        assert [a(LOGITS) for _ in range(40)] == [b(LOGITS).token_id for _ in range(40)]


def test_greedy_logprobs_are_the_model_distribution() -> None:
    pick = TokenChooser(GREEDY, top_logprobs=3)(LOGITS)
    assert pick.token_id == 1 and pick.logprob is not None
    assert pick.logprob.logprob == pytest.approx(math.log(0.5), rel=1e-5)
    assert [t for t, _ in pick.logprob.top] == [1, 2, 3]
    assert [lp for _, lp in pick.logprob.top] == pytest.approx(
        [math.log(0.5), math.log(0.3), math.log(0.1)], rel=1e-5)


def test_sampled_logprobs_are_those_of_the_filtered_distribution() -> None:
    chooser = TokenChooser(SamplingParams(temperature=1.0, top_p=0.75, seed=0), top_logprobs=5)
    for _ in range(50):
        pick = chooser(LOGITS)
        assert pick.logprob is not None
        top = dict(pick.logprob.top)
        assert set(top) == {1, 2}  # the nucleus of 0.75: 0.5 + 0.3
        assert top[1] == pytest.approx(math.log(0.5 / 0.8), rel=1e-5)
        assert sum(math.exp(v) for v in top.values()) == pytest.approx(1.0)
        assert pick.logprob.logprob == top[pick.token_id]


def test_penalties_apply_to_generated_tokens_only() -> None:
    plain = TokenChooser(GREEDY, top_logprobs=5)
    penalised = TokenChooser(GREEDY, Penalties(presence=0.5, frequency=1.0), top_logprobs=5)
    first_a, first_b = plain(LOGITS), penalised(LOGITS)
    assert first_a == first_b  # nothing generated yet: nothing to penalise
    second = penalised(LOGITS)
    assert second.token_id == 2  # token 1 lost 1.5 nats: 0.5 -> below 0.3
    assert second.logprob is not None
    shifted = LOGITS.astype(np.float64).copy()
    shifted[1] -= 1.5
    assert second.logprob.logprob == pytest.approx(float(log_softmax(shifted)[2]), rel=1e-6)


def test_penalty_bounds() -> None:
    with pytest.raises(BadRequestError):
        Penalties(presence=2.5)
    assert not Penalties().active and Penalties(frequency=-1).active


def test_constraint_masks_this_sequence_only() -> None:
    rule = OnlyEven()
    row = LOGITS.copy()
    constrained = TokenChooser(GREEDY, constraint=rule, top_logprobs=5)
    free = TokenChooser(GREEDY)
    assert constrained(row).token_id == 2  # 1 is odd
    assert free(row).token_id == 1  # the same row, untouched
    assert np.array_equal(row, LOGITS)
    assert rule.seen == [2]
    pick = constrained(row)
    assert pick.logprob is not None and {t for t, _ in pick.logprob.top} == {0, 2, 4}


def test_a_constraint_that_allows_nothing_is_an_error() -> None:
    with pytest.raises(BadRequestError):
        TokenChooser(GREEDY, constraint=Nothing())(LOGITS)


def test_top_alternatives_skip_impossible_tokens() -> None:
    logp = np.array([-np.inf, -0.1, -3.0, -np.inf])
    assert top_alternatives(logp, 4) == ((1, -0.1), (2, -3.0))
    assert top_alternatives(logp, 0) == ()
