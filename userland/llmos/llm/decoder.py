"""Runs the decoder graph on an ONNX Runtime session with the slot caches bound in place.

The session object comes from ``llmos.runtimes.onnx.open_session``; this module only calls
its ``io_binding``/``run_with_iobinding`` methods (no onnxruntime import). For each
number of running rows one binding is prepared once: the cache arrays' prefixes as both
``past`` inputs and ``present`` outputs, and small preallocated buffers for token ids,
positions and lengths. A decode step then writes and binds a few integers and runs.

On a CUDA session the matrix work runs on the GPU; the caches stay in host memory, where
onnxruntime runs GroupQueryAttention for float32 graphs (its CUDA kernel takes float16 and
bfloat16 only), so a step moves activations, never the caches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from llmos.errors import BadRequestError
from llmos.llm.interrupt import Interrupt, Interrupted
from llmos.llm.kvcache import CacheLayout, KVCache
from llmos.llm.prefixcache import PrefixCache
from llmos.pack.llm.architecture import (
    INPUT_IDS,
    LOGITS,
    LOGITS_TO_KEEP,
    POSITION_IDS,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
    DecoderSpec,
    past_names,
    present_names,
)


class IOBinding(Protocol):
    def bind_input(self, name: str, device_type: str, device_id: int, element_type: Any,
                   shape: Sequence[int], buffer_ptr: int) -> None: ...

    def bind_output(self, name: str, device_type: str = ..., device_id: int = ...,
                    element_type: Any = ..., shape: Sequence[int] | None = ...,
                    buffer_ptr: int | None = ...) -> None: ...


class Session(Protocol):
    """The part of ``onnxruntime.InferenceSession`` the decoder uses."""

    def io_binding(self) -> Any: ...

    def run_with_iobinding(self, iobinding: Any, run_options: Any = None) -> None: ...


def _bind_in(b: IOBinding, name: str, a: np.ndarray, shape: Sequence[int] | None = None) -> None:
    b.bind_input(name, "cpu", 0, a.dtype.type, list(a.shape if shape is None else shape),
                 a.ctypes.data)


def _bind_out(b: IOBinding, name: str, a: np.ndarray, shape: Sequence[int]) -> None:
    b.bind_output(name, "cpu", 0, a.dtype.type, list(shape), a.ctypes.data)


class Decoder:
    """One session, its slot caches, and the buffers a step reads and writes.

    Thread-confined: only the engine's worker thread calls it.
    """

    def __init__(self, session: Session, spec: DecoderSpec, slots: int, capacity: int,
                 run_options: Callable[[], Any] | None = None,
                 prefix: PrefixCache[np.ndarray] | None = None) -> None:
        """``run_options``: makes an ``onnxruntime.RunOptions`` (``llmos.runtimes.onnx``);
        without it a prefill cannot be interrupted. ``prefix``: where ``remember`` keeps
        blocks of KV for ``restore`` (None: no prefix reuse)."""
        self.session = session
        self.prefix = prefix
        self._run_options = run_options
        self.spec = spec
        self.layout = CacheLayout.of(spec, slots, capacity)
        self.cache = KVCache(self.layout)
        self._tokens = np.zeros((slots, 1), np.int64)
        self._positions = np.zeros((slots, 1), np.int64)
        self._seqlens = np.zeros(slots, np.int32)
        self._total = np.zeros((), np.int32)
        self._keep_one = np.ones(1, np.int64)
        self._logits = np.zeros((slots, 1, spec.vocab_size), np.float32)
        self._bindings: dict[int, Any] = {}

    @property
    def capacity(self) -> int:
        return self.layout.capacity

    def _bind_caches(self, b: IOBinding, start: int, stop: int) -> None:
        shape = (stop - start, *self.layout.slot_shape)
        for layer, kind, array in self.cache.arrays():
            view = array[start:stop]
            index = 0 if kind == "key" else 1
            _bind_in(b, past_names(layer)[index], view, shape)
            _bind_out(b, present_names(layer)[index], view, shape)

    def _decode_binding(self, rows: int) -> Any:
        b = self._bindings.get(rows)
        if b is None:
            b = self.session.io_binding()
            _bind_in(b, LOGITS_TO_KEEP, self._keep_one)
            _bind_out(b, LOGITS, self._logits, (rows, 1, self.spec.vocab_size))
            self._bind_caches(b, 0, rows)
            self._bindings[rows] = b
        # Bound again each step: onnxruntime copies a host input that a GPU node consumes
        # when it is bound, not when it runs (on the CPU binding is only a pointer).
        _bind_in(b, INPUT_IDS, self._tokens, (rows, 1))
        _bind_in(b, POSITION_IDS, self._positions, (rows, 1))
        _bind_in(b, SEQLENS_K, self._seqlens, (rows,))
        _bind_in(b, TOTAL_SEQUENCE_LENGTH, self._total, ())
        return b

    def prefill(self, slot: int, token_ids: Sequence[int],
                interrupt: Interrupt | None = None, start: int = 0) -> np.ndarray:
        """Append ``token_ids`` to ``slot`` after the ``start`` tokens it already holds (0: an
        empty slot; more: a restored prefix or an earlier chunk of the prompt); logits of
        the last position [V] (a copy). ``Interrupted`` if ``interrupt`` is requested before
        or while it runs."""
        n = len(token_ids)
        if n == 0:
            raise BadRequestError("the prompt is empty", "send at least one token of text")
        total = start + n
        if total > self.capacity:
            raise BadRequestError(
                f"{total} tokens do not fit the context of {self.capacity} tokens",
                "shorten the prompt or lower max_tokens")
        ids = np.asarray(token_ids, np.int64).reshape(1, n)
        positions = np.arange(start, total, dtype=np.int64).reshape(1, n)
        seqlens = np.array([total - 1], np.int32)
        total_len = np.array(total, np.int32)
        logits = np.empty((1, 1, self.spec.vocab_size), np.float32)
        b = self.session.io_binding()
        _bind_in(b, INPUT_IDS, ids)
        _bind_in(b, POSITION_IDS, positions)
        _bind_in(b, SEQLENS_K, seqlens)
        _bind_in(b, TOTAL_SEQUENCE_LENGTH, total_len)
        _bind_in(b, LOGITS_TO_KEEP, self._keep_one)
        _bind_out(b, LOGITS, logits, logits.shape)
        self._bind_caches(b, slot, slot + 1)
        self._run(b, interrupt)
        row: np.ndarray = logits[0, 0]
        return row

    def _run(self, binding: Any, interrupt: Interrupt | None) -> None:
        if interrupt is None or self._run_options is None:
            self.session.run_with_iobinding(binding)
            return
        options = self._run_options()
        interrupt.on_request(lambda: setattr(options, "terminate", True))
        try:
            self.session.run_with_iobinding(binding, options)
        except Exception as exc:
            if interrupt.requested:
                raise Interrupted("the prefill was interrupted") from exc
            raise

    def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
        """One step for rows ``0..n-1``: row i appends ``tokens[i]`` after ``lengths[i]``
        cached tokens. Returns logits [n, V] (a view, valid until the next step)."""
        rows = len(tokens)
        self._tokens[:rows, 0] = tokens
        self._positions[:rows, 0] = lengths
        self._seqlens[:rows] = lengths
        self._total[...] = max(lengths) + 1
        self.session.run_with_iobinding(self._decode_binding(rows))
        return self._logits[:rows, 0]

    def move(self, src: int, dst: int, length: int) -> None:
        self.cache.move(src, dst, length)

    def restore(self, slot: int, token_ids: Sequence[int]) -> tuple[int, np.ndarray | None]:
        """Copy the longest cached prefix of ``token_ids`` into the empty ``slot``. Returns
        the number of tokens the caller still has to prefill from, and None; or, for a
        prompt cached to its end with its last logits, its length and those logits (a
        copy): nothing to prefill. Otherwise at least two tokens are left to prefill: a
        one-token prefill would run other kernels than the prompt's first reading did
        (``llmos.llm.engine.chunk_size``), giving other numbers."""
        if self.prefix is None:
            return 0, None
        tokens, blocks = self.prefix.lookup(token_ids)
        start = 0
        for block in blocks:
            self.cache.write(slot, start, block)
            start += block.shape[3]
        if tokens == len(token_ids):
            logits = self.prefix.end(token_ids)
            if logits is not None:
                return tokens, logits.copy()
        return max(0, min(tokens, len(token_ids) - 2)), None

    def remember(self, slot: int, token_ids: Sequence[int],
                 logits: np.ndarray | None = None) -> None:
        """Keep the blocks of ``token_ids``, whose KV ``slot`` holds, for later ``restore``
        calls (those not cached yet are copied out), and ``logits``, the last token's."""
        if self.prefix is None:
            return
        self.prefix.insert(token_ids, lambda start, stop: self.cache.read(slot, start, stop))
        if logits is not None:
            kept = logits.copy()
            kept.flags.writeable = False
            self.prefix.put_end(token_ids, kept)

    @property
    def prefix_bytes(self) -> int | None:
        """Bytes the prefix cache holds (None: no prefix cache)."""
        return None if self.prefix is None else self.prefix.bytes
