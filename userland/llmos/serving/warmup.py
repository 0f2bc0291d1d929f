"""A sample input for each model, derived from its signature alone (pure).

Every model runs once on it before it is declared READY, so the first client request does
not pay for lazy initialisation (allocator arenas, kernel selection, JIT).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from llmos.datatypes import V2_TO_NUMPY
from llmos.pack.manifest import TensorSpec

BATCH = 1  # a dynamic leading dimension becomes 1
OTHER = 8  # any other dynamic dimension (sequence length, say) becomes 8


def sample_shape(spec: TensorSpec) -> tuple[int, ...]:
    return tuple(d if d >= 0 else (BATCH if i == 0 else OTHER) for i, d in enumerate(spec.shape))


def sample_tensor(spec: TensorSpec) -> np.ndarray:
    """Ones for integers (valid token ids and masks), zeros for floats, b"warmup" for BYTES."""
    shape = sample_shape(spec)
    dtype = V2_TO_NUMPY[spec.datatype]
    if spec.datatype == "BYTES":
        arr = np.empty(shape, dtype=object)
        arr.fill(b"warmup")
        return arr
    if dtype.kind in "iub":
        return np.ones(shape, dtype=dtype)
    return np.zeros(shape, dtype=dtype)


def sample_inputs(specs: Iterable[TensorSpec]) -> dict[str, np.ndarray]:
    return {s.name: sample_tensor(s) for s in specs}
