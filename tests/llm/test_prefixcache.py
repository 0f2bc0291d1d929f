"""The prefix cache's pure core: chained block keys, longest-prefix lookup, LRU in a budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest

from llmos.llm.kvcache import CacheLayout, KVCache
from llmos.llm.prefixcache import PrefixCache, block_keys, tail_key


@dataclass(frozen=True)
class Blk:
    tokens: tuple[int, ...]
    nbytes: int = 10


def reader(token_ids: Sequence[int], log: list[tuple[int, int]] | None = None
           ) -> object:
    def read(start: int, stop: int) -> Blk:
        if log is not None:
            log.append((start, stop))
        return Blk(tuple(token_ids[start:stop]), 10 * (stop - start))
    return read


def cache(size: int, budget: int) -> PrefixCache[Blk]:
    return PrefixCache(size, budget)


def test_a_key_covers_every_token_before_its_block() -> None:
    a = block_keys([1, 2, 3, 4, 5, 6, 7], 2)
    b = block_keys([9, 2, 3, 4, 5, 6], 2)
    assert len(a) == 3 and len(b) == 3  # full blocks only
    assert a[0] != b[0]
    assert a[1] != b[1] and a[2] != b[2]  # same tokens, other prefix: other key
    assert block_keys([1, 2, 3, 4, 0, 0], 2)[:2] == a[:2]
    assert block_keys([1, 2], 4) == []
    assert block_keys((1, 2, 3, 4), 2) == block_keys([1, 2, 3, 4], 2)
    assert tail_key(a[0], [3]) != tail_key(b[0], [3]) != tail_key(a[0], [3, 4])
    assert tail_key(a[0], [3, 4]) != a[1]  # a partial key never names a full block


def test_lookup_finds_the_longest_cached_prefix_and_its_partial_tail() -> None:
    c = cache(2, 1000)
    seen = [0, 1, 2, 3, 4]
    log: list[tuple[int, int]] = []
    c.insert(seen, reader(seen, log))  # type: ignore[arg-type]
    assert log == [(0, 2), (2, 4), (4, 5)] and c.bytes == 50
    c.insert(seen, reader(seen, log))  # type: ignore[arg-type]
    assert len(log) == 3  # nothing read twice
    tokens, blocks = c.lookup([0, 1, 2, 3, 4, 5, 6])
    assert tokens == 5 and [b.tokens for b in blocks] == [(0, 1), (2, 3), (4,)]
    tokens, blocks = c.lookup([0, 1, 2, 3, 9])  # the tail does not match
    assert tokens == 4 and len(blocks) == 2
    tokens, blocks = c.lookup([0, 1, 2, 9, 9, 9])
    assert tokens == 2 and [b.tokens for b in blocks] == [(0, 1)]
    assert c.lookup([7, 7, 7, 7]) == (0, [])
    assert c.lookup([0]) == (0, [])  # a tail is one block's exact tokens: (0, 1) is full
    assert (c.stats.hits, c.stats.misses, c.stats.reused_tokens) == (3, 2, 5 + 4 + 2)


def test_eviction_keeps_the_budget_and_takes_leaves_before_shared_prefixes() -> None:
    c = cache(1, 40)
    system = [1, 2, 3]
    c.insert(system, reader(system))  # type: ignore[arg-type]
    other = [5, 6]
    c.insert(other, reader(other))  # type: ignore[arg-type]  # 50 bytes: one block goes
    assert c.bytes == 40 and len(c) == 4 and c.stats.evicted_blocks == 1
    assert c.lookup(system)[0] == 2  # its leaf went first
    assert c.lookup(other)[0] == 2
    c.insert([8, 9, 10, 11], lambda a, b: Blk((), 41))  # larger than the budget: not kept
    assert c.bytes == 40 and len(c) == 4


def test_a_block_in_use_is_never_changed_by_its_eviction_or_later_writes() -> None:
    """The KV cache hands the store read-only copies: evicting a block, or the slot it
    was read from being overwritten, leaves what a sequence holds as it was."""
    kv = KVCache(CacheLayout(slots=2, capacity=4, num_layers=2, kv_heads=1, head_dim=3))
    for layer, _, array in kv.arrays():
        array[0] = np.arange(12, dtype=np.float32).reshape(1, 4, 3) + 100 * layer
    c: PrefixCache[np.ndarray] = PrefixCache(2, 2 * 2 * 1 * 2 * 3 * 4)  # one block
    c.insert([1, 2], lambda start, stop: kv.read(0, start, stop))
    _, held = c.lookup([1, 2, 5])
    assert len(held) == 1 and not held[0].flags.writeable
    expected = held[0].copy()
    np.testing.assert_array_equal(expected[1, 0, 0], [[100, 101, 102], [103, 104, 105]])
    for _, _, array in kv.arrays():
        array[0] = -1.0  # the slot is reused by another sequence
    kv.write(0, 0, np.full_like(expected, -2.0))
    c.insert([3, 4], lambda start, stop: kv.read(0, start, stop))  # evicts [1, 2]
    assert c.lookup([1, 2, 5]) == (0, []) and c.stats.evicted_blocks == 1
    np.testing.assert_array_equal(held[0], expected)
    with pytest.raises(ValueError):
        held[0][0, 0, 0, 0, 0] = 0.0
    c.clear()
    assert (len(c), c.bytes) == (0, 0)


def test_block_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PrefixCache(0, 10)


def test_the_metrics_count_hits_misses_reused_tokens_and_bytes() -> None:
    from prometheus_client import CollectorRegistry

    from llmos.llm.metrics import metrics_for

    registry = CollectorRegistry()
    observer = metrics_for(registry).observer("m")
    observer.prefix_reuse(40, 32, 1000)
    observer.prefix_reuse(10, 0, 1200)
    value = registry.get_sample_value
    assert value("vllm:prefix_cache_queries_total", {"model_name": "m"}) == 50
    assert value("vllm:prefix_cache_hits_total", {"model_name": "m"}) == 32
    assert value("llmos:prefix_cache_lookups_total", {"model_name": "m", "result": "hit"}) == 1
    assert value("llmos:prefix_cache_lookups_total", {"model_name": "m", "result": "miss"}) == 1
    assert value("llmos:prefix_cache_bytes", {"model_name": "m"}) == 1200


def test_a_prompts_end_is_kept_for_exactly_its_tokens_and_counted() -> None:
    c = cache(2, 100)
    c.put_end([1, 2, 3], Blk((), 30))
    assert c.end([1, 2, 3]) == Blk((), 30) and c.bytes == 30
    assert c.end([1, 2]) is None and c.end([1, 2, 3, 4]) is None
    c.insert([5, 6, 7, 8], reader([5, 6, 7, 8]))  # type: ignore[arg-type]  # 40 more bytes
    c.insert([9, 9, 9, 9], reader([9, 9, 9, 9]))  # type: ignore[arg-type]  # evicts
    assert c.bytes <= 100 and c.end([1, 2, 3]) is None  # least recently used went first
