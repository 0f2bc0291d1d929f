"""The weights-file layout: placement, manifest round trip, zero-copy views."""

from __future__ import annotations

import numpy as np
import pytest

from llmos.errors import PackFormatError
from llmos.pack.weights import ALIGN, WeightTable, concatenate, plan, views


def test_plan_aligns_every_tensor() -> None:
    table = plan([("a", "float32", (3,)), ("b", "int8", (5, 7)), ("c", "float16", (2, 2))])
    assert [e.offset for e in table.entries] == [0, ALIGN, 2 * ALIGN]
    assert [e.nbytes for e in table.entries] == [12, 35, 8]
    assert table.size == 2 * ALIGN + 8


def test_table_round_trips_through_manifest_extra() -> None:
    table = plan([("w", "float32", (4, 4)), ("q", "int8", (10,))])
    assert WeightTable.from_extra({"weights": table.to_extra()}) == table
    assert WeightTable.from_extra({}) is None


@pytest.mark.parametrize("bad", [
    {"file": "weights.bin", "tensors": [{"name": "w", "dtype": "bfloat16", "shape": [2],
                                         "offset": 0}]},
    {"file": "weights.bin", "tensors": [{"name": "w", "dtype": "float32", "shape": [2],
                                         "offset": -64}]},
    {"file": "weights.bin", "tensors": [{"name": "w"}]},
])
def test_malformed_tables_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(PackFormatError):
        WeightTable.from_extra({"weights": bad})


def test_views_share_the_buffer() -> None:
    arrays: dict[str, np.ndarray] = {"w": np.arange(12, dtype=np.float32).reshape(3, 4),
                                     "i": np.arange(5, dtype=np.int64)}
    table = plan((n, a.dtype.name, a.shape) for n, a in arrays.items())
    buffer = memoryview(bytearray(concatenate(table, {n: a.tobytes() for n, a in
                                                      arrays.items()})))
    got = views(table, buffer)
    for name, array in arrays.items():
        np.testing.assert_array_equal(got[name], array)
    buffer[0:4] = np.float32(42.0).tobytes()  # the view sees a write to the buffer
    assert got["w"][0, 0] == 42.0


def test_views_refuse_a_short_buffer() -> None:
    table = plan([("w", "float32", (100,))])
    with pytest.raises(PackFormatError, match="needs 400"):
        views(table, memoryview(bytearray(200)))
