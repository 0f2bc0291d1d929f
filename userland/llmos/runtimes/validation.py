"""Checking a request's tensors against a model's public signature (pure), in one place.

The data plane (``llmos.dataplane``) calls ``check_inputs`` once per request, so a client
error is a ``BadRequestError`` naming the input, the expected and the received datatype or
shape, never an opaque runtime exception; the runtimes only ``conform`` what was checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

import numpy as np

from llmos.datatypes import V2_TO_NUMPY, v2_of
from llmos.errors import BadRequestError
from llmos.pack.manifest import TensorSpec


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of ``array`` (BYTES for object and string arrays)."""
    if array.dtype.kind in "OSU":  # object arrays of bytes/str, or fixed-width strings
        return "BYTES"
    try:
        return v2_of(array)
    except ValueError:
        return str(array.dtype)


def _bad(message: str, hint: str = "see the model's signature: GET /v2/models/NAME") -> NoReturn:
    raise BadRequestError(message, hint)


def _dims_match(shape: Sequence[int], spec: Sequence[int]) -> bool:
    return len(shape) == len(spec) and all(s < 0 or s == d for d, s in zip(shape, spec,
                                                                           strict=True))


def _conform(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    if spec.datatype == "BYTES":
        return array if array.dtype == object else array.astype(object)
    return np.ascontiguousarray(array, dtype=V2_TO_NUMPY[spec.datatype])


def check_inputs(model: str, specs: Sequence[TensorSpec],
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The request's inputs, in signature order and the runtime's memory layout, once each
    matches its spec (name, datatype, shape); else BadRequestError naming the mismatch."""
    by_name = {s.name: s for s in specs}
    missing = [n for n in by_name if n not in inputs]
    if missing:
        _bad(f"model {model!r} needs input(s) {', '.join(missing)}",
             f"its inputs are {', '.join(by_name)} (GET /v2/models/{model})")
    for name, raw in inputs.items():
        spec = by_name.get(name)
        if spec is None:
            _bad(f"model {model!r} has no input {name!r}",
                 f"its inputs are {', '.join(by_name)}")
        arr = np.asarray(raw)
        given = datatype_of(arr)
        if given != spec.datatype:
            _bad(f"input {name!r}: datatype {given} given, model {model!r} expects "
                 f"{spec.datatype}",
                 f"send {name!r} as {spec.datatype} with shape {shape_text(spec.shape)}")
        if not _dims_match(arr.shape, spec.shape):
            _bad(f"input {name!r}: shape {list(arr.shape)} does not match the model's "
                 f"{list(spec.shape)} (-1 = any)",
                 f"send {name!r} with shape {shape_text(spec.shape)}")
    return conform(specs, inputs)


def check_outputs(model: str, requested: Iterable[str], specs: Iterable[TensorSpec]) -> None:
    """Every requested output is one the model has; else BadRequestError."""
    names = {s.name for s in specs}
    unknown = [n for n in requested if n not in names]
    if unknown:
        _bad(f"model {model!r} has no output(s) {', '.join(unknown)}",
             f"its outputs are {', '.join(sorted(names))}")


def conform(specs: Sequence[TensorSpec],
            inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs already checked (``check_inputs``), in signature order and the runtime's
    layout: what a runtime does before it feeds its session (no second validation)."""
    return {s.name: _conform(s, np.asarray(inputs[s.name])) for s in specs}


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
