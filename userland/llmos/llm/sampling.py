"""Choosing the next token from logits (pure numpy).

Greedy when ``temperature`` is 0; otherwise temperature, then top-k, then top-p (nucleus)
filtering and a draw from a per-request ``numpy.random.Generator``: the same seed and
the same logits give the same tokens, run after run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmos.errors import BadRequestError, LlmosError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.temperature <= 2.0:
            raise BadRequestError(f"temperature must be in [0, 2], got {self.temperature}",
                                  "use 0 for greedy decoding")
        if not 0.0 < self.top_p <= 1.0:
            raise BadRequestError(f"top_p must be in (0, 1], got {self.top_p}",
                                  "use 1 to disable nucleus sampling")
        if self.top_k < 0:
            raise BadRequestError(f"top_k must be >= 0, got {self.top_k}", "use 0 to disable it")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1


SEED_MASK = 2**64 - 1  # OpenAI's seed is a signed 64-bit integer; numpy's is unsigned


class Sampler:
    """Samples one request's tokens; owns its random generator (thread-confined)."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        seed = None if params.seed is None else params.seed & SEED_MASK
        self._rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray) -> int:
        """The next token id from a 1-D row of logits.

        Numerically safe for any temperature in range (1e-320 included: the logits are
        shifted to a maximum of 0 before the division, so nothing overflows to inf - inf)
        and for rows holding NaN or infinities (NaN counts as -inf); a row with no finite
        logit at all is this sequence's error, never its batch's.
        """
        row = clean_row(logits)
        if self.params.greedy:
            return int(np.argmax(row))
        return self.draw(distribution(row, self.params))

    def draw(self, probs: np.ndarray) -> int:
        """A token id drawn from ``probs`` with this request's generator."""
        return int(self._rng.choice(probs.size, p=probs))


def clean_row(logits: np.ndarray) -> np.ndarray:
    """The row as float64 (a copy when it had to change): NaN counts as -inf, +inf
    outranks everything; LlmosError when no logit is finite."""
    row = np.asarray(logits, dtype=np.float64)
    finite = np.isfinite(row)
    if not finite.all():
        row = np.where(np.isnan(row), -np.inf, row)
        if np.isposinf(row).any():  # +inf outranks everything: choose among those
            row = np.where(np.isposinf(row), 0.0, -np.inf)
        elif not finite.any():
            raise LlmosError("the model produced no finite logit for this sequence",
                             "the model's weights or inputs are broken; see the log")
    return row


def distribution(row: np.ndarray, p: SamplingParams) -> np.ndarray:
    """The probabilities a sampled token is drawn from: ``row`` (clean, with a finite
    maximum) at the temperature, after top-k and top-p."""
    with np.errstate(over="ignore"):  # a tiny temperature sends the rest to -inf
        scaled = (row - row.max()) / p.temperature  # <= 0 everywhere
    if p.top_k and p.top_k < scaled.size:
        cut = np.partition(scaled, -p.top_k)[-p.top_k]
        scaled = np.where(scaled >= cut, scaled, -np.inf)
    probs: np.ndarray = np.exp(scaled)  # the maximum is exp(0) = 1, so the sum is >= 1
    probs /= probs.sum()
    if p.top_p < 1.0:
        probs = nucleus(probs, p.top_p)
    return probs


def nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Keep the smallest set of most likely tokens whose mass reaches ``top_p``; renormalise."""
    order = np.argsort(probs)[::-1]
    cumulative = np.cumsum(probs[order])
    keep = int(np.searchsorted(cumulative, top_p)) + 1
    out = np.zeros_like(probs)
    chosen = order[:keep]
    out[chosen] = probs[chosen]
    out /= out.sum()
    return out
