"""Checking a request's tensors against a model's public signature (pure).

Every runtime calls ``check_inputs`` before it touches its session, so a client error is a
``BadRequestError`` naming the input, the expected and the received datatype or shape,
never an opaque runtime exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from llmos.datatypes import V2_TO_NUMPY, v2_of
from llmos.errors import BadRequestError
from llmos.pack.manifest import TensorSpec


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _datatype(array: np.ndarray) -> str:
    if array.dtype.kind in "OSU":  # object arrays of bytes/str, or fixed-width strings
        return "BYTES"
    try:
        return v2_of(array)
    except ValueError:
        return str(array.dtype)


def _check(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    got = _datatype(array)
    if got != spec.datatype:
        raise BadRequestError(
            f"input {spec.name!r}: expected datatype {spec.datatype}, got {got}",
            f"send {spec.name!r} as {spec.datatype} with shape {shape_text(spec.shape)}")
    fits = len(array.shape) == len(spec.shape) and all(
        want < 0 or want == have for want, have in zip(spec.shape, array.shape, strict=True))
    if not fits:
        raise BadRequestError(
            f"input {spec.name!r}: expected shape {shape_text(spec.shape)} (-1 = any), "
            f"got {shape_text(array.shape)}",
            f"send {spec.name!r} with shape {shape_text(spec.shape)}")
    if spec.datatype == "BYTES":
        return array if array.dtype == object else array.astype(object)
    return np.ascontiguousarray(array, dtype=V2_TO_NUMPY[spec.datatype])


def check_inputs(specs: Sequence[TensorSpec],
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs, in signature order, once each matches its spec; else BadRequestError."""
    names = [s.name for s in specs]
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise BadRequestError(f"unknown input(s) {unknown}; this model takes {names}",
                              "send exactly the model's inputs (GET /v2/models/NAME lists them)")
    missing = [n for n in names if n not in inputs]
    if missing:
        raise BadRequestError(f"missing input(s) {missing}; this model takes {names}",
                              "send every input the model declares")
    return {s.name: _check(s, np.asarray(inputs[s.name])) for s in specs}


def is_batchable(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """True when every input and output has a dynamic leading (batch) dimension."""
    specs = (*inputs, *outputs)
    return bool(specs) and all(len(s.shape) >= 1 and s.shape[0] < 0 for s in specs)


class Signed:
    """The signature part of a ``Runtime``: a runtime sets ``_inputs`` and ``_outputs``
    from its manifest and inherits the three properties."""

    _inputs: tuple[TensorSpec, ...]
    _outputs: tuple[TensorSpec, ...]

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    @property
    def batchable(self) -> bool:
        return is_batchable(self._inputs, self._outputs)
