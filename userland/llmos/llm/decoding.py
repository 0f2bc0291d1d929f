"""One sequence's token choice: penalties, a grammar mask, sampling and log-probabilities.

Every sequence in the engine's batch owns a ``TokenChooser``; it sees only its own row of
logits, so penalties, masks and random draws never leak between requests. The order is
OpenAI's: the model's logits, minus the presence/frequency penalties of the tokens this
sequence has generated, with the tokens the constraint forbids removed, then the
sampling parameters (``llmos.llm.sampling``: temperature, top-k, top-p).

Log-probabilities are those of the distribution the token was actually drawn from, after
all of the above: the alternatives filtered out by top-k/top-p or the grammar are never
listed, so the listed probabilities sum to at most 1. Greedy decoding (temperature 0)
reports the distribution at temperature 1 (the model's own, penalised and masked).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from llmos.errors import BadRequestError
from llmos.llm.logprobs import TokenLogprob, top_alternatives
from llmos.llm.sampling import Sampler, SamplingParams, clean_row, distribution


@dataclass(frozen=True)
class Penalties:
    presence: float = 0.0  # subtracted once from every token generated at least once
    frequency: float = 0.0  # subtracted per earlier occurrence

    def __post_init__(self) -> None:
        for name, v in (("presence_penalty", self.presence),
                        ("frequency_penalty", self.frequency)):
            if not -2.0 <= v <= 2.0:
                raise BadRequestError(f"{name} must be in [-2, 2], got {v}",
                                      "use 0 for no penalty")

    @property
    def active(self) -> bool:
        return bool(self.presence or self.frequency)


class TokenConstraint(Protocol):
    """A per-sequence grammar (``llmos.llm.constraints``): which tokens may come next."""

    def allowed(self, vocab_size: int, remaining: int | None = None) -> np.ndarray:
        """A boolean row of ``vocab_size``: True where the token keeps the output valid;
        ``remaining``: tokens the sequence may still generate, this one included."""
        ...

    def advance(self, token_id: int) -> None:
        """Record the chosen token (one that ``allowed`` permitted)."""
        ...


@dataclass(frozen=True)
class Pick:
    token_id: int
    logprob: TokenLogprob | None  # None unless log-probabilities were asked for


def log_softmax(x: np.ndarray) -> np.ndarray:
    finite = x[np.isfinite(x)]
    top = finite.max() if finite.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        shifted = x - top
        out: np.ndarray = shifted - np.log(np.exp(shifted).sum())
    return out


class TokenChooser:
    """Chooses one sequence's tokens; owns its random generator and token counts
    (thread-confined: only the engine's worker calls it)."""

    def __init__(self, params: SamplingParams, penalties: Penalties = Penalties(),
                 top_logprobs: int | None = None,
                 constraint: TokenConstraint | None = None) -> None:
        self.params = params
        self.penalties = penalties
        self.top_logprobs = top_logprobs  # None: no log-probabilities
        self.constraint = constraint
        self._sampler = Sampler(params)  # the same draws as a plain request's
        self._counts: dict[int, int] = {}

    @property
    def _plain(self) -> bool:
        return (self.top_logprobs is None and self.constraint is None
                and not self.penalties.active)

    def __call__(self, logits: np.ndarray, remaining: int | None = None) -> Pick:
        """The next token from a 1-D row of logits (the row is not modified);
        ``remaining``: the tokens left in the budget, this one included."""
        p = self.params
        if self._plain:
            return Pick(self._sampler(logits), None)
        x = clean_row(logits).copy()
        if self.penalties.active and self._counts:
            ids = np.fromiter(self._counts.keys(), np.int64, len(self._counts))
            counts = np.fromiter(self._counts.values(), np.float64, len(self._counts))
            x[ids] -= counts * self.penalties.frequency + self.penalties.presence
        if self.constraint is not None:
            allowed = self.constraint.allowed(x.size, remaining)
            if not allowed.any():
                raise BadRequestError("the output constraint allows no next token",
                                      "check the response_format or tools schema")
            x[~allowed] = -np.inf
            if not np.isfinite(x).any():  # the model gives every allowed token -inf
                x[allowed] = 0.0
        logp: np.ndarray | None = None
        if p.greedy:
            token = int(np.argmax(x))
            if self.top_logprobs is not None:
                logp = log_softmax(x)
        else:
            probs = distribution(x, p)
            token = self._sampler.draw(probs)
            if self.top_logprobs is not None:
                with np.errstate(divide="ignore"):
                    logp = np.log(probs)
        self._counts[token] = self._counts.get(token, 0) + 1
        if self.constraint is not None:
            self.constraint.advance(token)
        if logp is None or self.top_logprobs is None:
            return Pick(token, None)
        return Pick(token, TokenLogprob(token, float(logp[token]),
                                        top_alternatives(logp, self.top_logprobs)))
