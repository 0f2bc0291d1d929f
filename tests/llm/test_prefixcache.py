"""The prefix cache's pure core: chained block keys, longest-prefix lookup, LRU in a budget."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from llmos.llm.prefixcache import PrefixCache, block_keys


@dataclass(frozen=True)
class Blk:
    name: str
    nbytes: int = 10


def test_a_key_covers_every_token_before_its_block() -> None:
    a = block_keys([1, 2, 3, 4, 5, 6, 7], 2)
    b = block_keys([9, 2, 3, 4, 5, 6], 2)
    assert len(a) == 3 and len(b) == 3  # full blocks only
    assert a[0] != b[0]
    assert a[1] != b[1] and a[2] != b[2]  # same tokens, other prefix: other key
    assert block_keys([1, 2, 3, 4, 0, 0], 2)[:2] == a[:2]
    assert block_keys([1, 2], 4) == []
    assert block_keys((1, 2, 3, 4), 2) == block_keys([1, 2, 3, 4], 2)


def test_lookup_finds_the_longest_cached_prefix_and_counts() -> None:
    c: PrefixCache[Blk] = PrefixCache(2, 1000)
    keys = block_keys(range(10), 2)
    c.insert(keys[:3], {0: Blk("a"), 1: Blk("b"), 2: Blk("c")})
    assert [b.name for b in c.lookup(keys)] == ["a", "b", "c"]
    assert [b.name for b in c.lookup(keys, limit=2)] == ["a", "b"]
    assert c.lookup(block_keys([7, 7, 7, 7], 2)) == []
    other = block_keys([0, 1, 9, 9], 2)  # shares the first block only
    assert [b.name for b in c.lookup(other)] == ["a"]
    assert (c.stats.hits, c.stats.misses, c.stats.reused_tokens) == (3, 1, 6 + 4 + 2)
    assert c.missing(keys) == [3, 4] and c.bytes == 30


def test_eviction_keeps_the_budget_and_takes_leaves_before_shared_prefixes() -> None:
    c: PrefixCache[Blk] = PrefixCache(1, 40)
    system = block_keys([1, 2, 3], 1)
    c.insert(system, {0: Blk("s0"), 1: Blk("s1"), 2: Blk("s2")})
    other = block_keys([5, 6], 1)
    c.insert(other, {0: Blk("o0"), 1: Blk("o1")})  # 50 bytes: one block must go
    assert c.bytes == 40 and len(c) == 4 and c.stats.evicted_blocks == 1
    assert [b.name for b in c.lookup(system)] == ["s0", "s1"]  # its leaf went first
    assert [b.name for b in c.lookup(other)] == ["o0", "o1"]
    c.insert(block_keys([8], 1), {0: Blk("big", 41)})  # larger than the budget: not kept
    assert c.bytes == 40 and len(c) == 4


def test_a_block_set_is_never_changed_by_eviction_under_its_user() -> None:
    c: PrefixCache[Blk] = PrefixCache(1, 10)
    keys = block_keys([1], 1)
    c.insert(keys, {0: Blk("x")})
    held = c.lookup(keys)
    c.insert(block_keys([2], 1), {0: Blk("y")})  # evicts "x"
    assert held == [Blk("x")] and c.lookup(keys) == []
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
