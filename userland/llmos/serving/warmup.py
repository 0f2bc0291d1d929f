"""A sample input for each model, derived from its signature alone, and what counts as the
same answer to it (pure).

Every model runs once on it before it is declared READY, so the first client request does
not pay for lazy initialisation (allocator arenas, kernel selection, JIT). Where the loader
gives weights back, the model runs again and must give the same answer (``same_answer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def same_answer(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """The same outputs up to float rounding (a different kernel order moves the last
    digits; a runtime reading zeroed weights moves far more); other types exactly."""
    if a.keys() != b.keys():
        return False
    for name, x in a.items():
        y = b[name]
        if x.shape != y.shape:
            return False
        if x.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-4, atol=1e-6, equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True
