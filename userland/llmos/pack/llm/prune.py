"""Unstructured magnitude pruning of a checkpoint's projection weights (pure numpy).

In every attention and MLP projection matrix the ``sparsity`` fraction of weights with
the smallest magnitude becomes zero. Embeddings and norms are left alone. The network
computes as before (dense kernels), but the zeros compress: zstd shrinks the pack.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from llmos.errors import ConfigError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_projection(name: str) -> bool:
    return name.endswith(".weight") and name.split(".")[-2] in PROJECTIONS


def magnitude_prune(weights: Mapping[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """A copy of ``weights`` with each projection's smallest weights set to zero."""
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}",
                          "give the fraction of weights to remove, e.g. 0.3")
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        if sparsity == 0.0 or not is_projection(name):
            out[name] = w
            continue
        k = int(w.size * sparsity)
        threshold = np.partition(np.abs(w).ravel(), k)[k] if k else -1.0
        out[name] = np.where(np.abs(w) < threshold, np.float32(0), w).astype(w.dtype)
    return out


def sparsity_of(weights: Mapping[str, np.ndarray]) -> float:
    """Fraction of zeros among the projection weights."""
    zeros = total = 0
    for name, w in weights.items():
        if is_projection(name):
            zeros += int(np.count_nonzero(w == 0))
            total += w.size
    return zeros / total if total else 0.0
