"""Choosing the next token from logits (pure numpy).

Greedy when ``temperature`` is 0; otherwise temperature, then top-k, then top-p (nucleus)
filtering and a draw from a per-request ``numpy.random.Generator``: the same seed and
the same logits give the same tokens, run after run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llmos.errors import BadRequestError


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


class Sampler:
    """Samples one request's tokens; owns its random generator (thread-confined)."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self._rng = np.random.default_rng(params.seed)

    def __call__(self, logits: np.ndarray) -> int:
        """The next token id from a 1-D row of logits."""
        p = self.params
        if p.greedy:
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / p.temperature
        if p.top_k and p.top_k < scaled.size:
            cut = np.partition(scaled, -p.top_k)[-p.top_k]
            scaled = np.where(scaled >= cut, scaled, -np.inf)
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if p.top_p < 1.0:
            probs = nucleus(probs, p.top_p)
        return int(self._rng.choice(probs.size, p=probs))


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
