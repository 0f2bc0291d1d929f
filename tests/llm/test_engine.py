"""Continuous batching, scheduling and cancellation, on a small deterministic step runner.

The runner keeps each slot's tokens (its "cache") and computes the next token from the
whole history, so a request decoded in the wrong slot, or a slot moved wrongly when
another sequence leaves, produces different tokens than the serial reference.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from llmos.config import ModelConfig
from llmos.errors import BadRequestError, InferenceTimeoutError, LlmosError, QueueFullError
from llmos.llm.backend import engine_limits
from llmos.llm.engine import Engine, EngineLimits, chunk_size
from llmos.llm.generation import GenerationRequest
from llmos.llm.interrupt import Interrupt, Interrupted
from llmos.llm.sampling import SamplingParams

if TYPE_CHECKING:
    from conftest import Priorities  # tests/conftest.py

VOCAB = 40
EOS = 0
GREEDY = SamplingParams(temperature=0.0)


def next_token(history: Sequence[int]) -> int:
    """Deterministic 'model': the next token depends on every token so far (never EOS)."""
    return hash(tuple(history)) % (VOCAB - 1) + 1  # int tuples hash the same in every run


def reference(prompt: Sequence[int], n: int) -> list[int]:
    seq, out = list(prompt), []
    for _ in range(n):
        t = next_token(seq)
        out.append(t)
        seq.append(t)
    return out


def one_hot(token: int) -> np.ndarray:
    row = np.zeros(VOCAB, np.float32)
    row[token] = 1.0
    return row


class Runner:
    """Slots hold token histories; every call is recorded. ``prefixes``: a prefix cache of
    whole token histories (what ``remember`` saw), restored a block of 4 tokens at a time."""

    def __init__(self, slots: int, capacity: int = 64, delay_s: float = 0.0,
                 prefixes: bool = False) -> None:
        self.capacity = capacity
        self.cache: list[list[int]] = [[] for _ in range(slots)]
        self.rows_per_step: list[int] = []
        self.calls: list[tuple[str, int]] = []  # ("prefill", tokens) | ("decode", rows)
        self.delay_s = delay_s
        self.gate = threading.Event()
        self.gate.set()
        self.prefixes: list[tuple[int, ...]] | None = [] if prefixes else None
        self.ends: dict[tuple[int, ...], np.ndarray] = {}  # a prompt's last logits

    @property
    def prefix_bytes(self) -> int | None:
        return None if self.prefixes is None else len(self.prefixes)

    def restore(self, slot: int, token_ids: Sequence[int]) -> tuple[int, np.ndarray | None]:
        if tuple(token_ids) in self.ends:
            self.cache[slot] = list(token_ids)
            return len(token_ids), self.ends[tuple(token_ids)]
        best = 0
        for known in self.prefixes or []:
            n = 0
            while n < min(len(known), len(token_ids) - 2) and known[n] == token_ids[n]:
                n += 1
            best = max(best, n - n % 4)
        self.cache[slot] = list(token_ids[:best])
        return best, None

    def remember(self, slot: int, token_ids: Sequence[int],
                 logits: np.ndarray | None = None) -> None:
        assert self.cache[slot] == list(token_ids), "remembers what its slot does not hold"
        if self.prefixes is not None:
            self.prefixes.append(tuple(token_ids))
            if logits is not None:
                self.ends[tuple(token_ids)] = logits

    def prefill(self, slot: int, token_ids: Sequence[int], interrupt: object = None,
                start: int = 0) -> np.ndarray:
        self.gate.wait()
        time.sleep(self.delay_s)
        self.calls.append(("prefill", len(token_ids)))
        assert len(self.cache[slot]) >= start, "a chunk after a gap"
        self.cache[slot] = self.cache[slot][:start] + list(token_ids)
        return one_hot(next_token(self.cache[slot]))

    def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
        self.gate.wait()
        time.sleep(self.delay_s)
        self.rows_per_step.append(len(tokens))
        self.calls.append(("decode", len(tokens)))
        out = []
        for slot, (tok, length) in enumerate(zip(tokens, lengths, strict=True)):
            assert len(self.cache[slot]) == length, "slot holds the wrong sequence"
            self.cache[slot].append(tok)
            out.append(one_hot(next_token(self.cache[slot])))
        return np.stack(out)

    def move(self, src: int, dst: int, length: int) -> None:
        self.cache[dst] = list(self.cache[src][:length])


def text(ids: Sequence[int]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids)


def engine(runner: Runner, **limits: int) -> Engine:
    return Engine(runner, text, frozenset(), EngineLimits(**limits), name="test")


async def test_single_request_matches_the_serial_reference() -> None:
    e = engine(Runner(2))
    try:
        done = await e.submit(GenerationRequest((3, 4, 5), 12, GREEDY)).collect()
    finally:
        e.close()
    assert list(done.token_ids) == reference((3, 4, 5), 12)
    assert done.text == text(done.token_ids)
    assert (done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("length", 3, 12)


async def test_concurrent_requests_are_decoded_together_and_stay_correct() -> None:
    runner = Runner(3)
    e = engine(runner, max_running=3)
    prompts = [(i + 1, 2 * i + 3) for i in range(7)]
    lengths = [5, 17, 9, 23, 11, 3, 14]  # sequences leave at different steps: slots move
    try:
        results = await asyncio.gather(*(
            e.submit(GenerationRequest(p, n, GREEDY)).collect()
            for p, n in zip(prompts, lengths, strict=True)))
    finally:
        e.close()
    for p, n, r in zip(prompts, lengths, results, strict=True):
        assert list(r.token_ids) == reference(p, n)
    assert max(runner.rows_per_step) == 3  # batched, never more than the slots
    assert sum(runner.rows_per_step) == sum(n - 1 for n in lengths)  # every token decoded once
    assert len(runner.rows_per_step) < 0.5 * sum(n - 1 for n in lengths)  # in fewer steps


async def test_a_new_request_joins_a_running_one_between_steps() -> None:
    runner = Runner(2, delay_s=0.002)
    e = engine(runner, max_running=2)
    try:
        long = e.submit(GenerationRequest((1,), 60, GREEDY))
        first = await long.__anext__()
        assert first.finish_reason is None
        short = await e.submit(GenerationRequest((2,), 3, GREEDY)).collect()
        rest = [c async for c in long]
    finally:
        e.close()
    assert rest[-1].finish_reason == "length"  # the long one was still running...
    assert len(rest) > 10  # ...well after the short one finished
    assert list(short.token_ids) == reference((2,), 3)


async def test_cancel_frees_the_slot_for_a_waiting_request() -> None:
    runner = Runner(1, delay_s=0.001)
    e = engine(runner, max_running=1, queue_size=4)
    try:
        hog = e.submit(GenerationRequest((1,), 50_000, GREEDY))
        await hog.__anext__()
        waiting = e.submit(GenerationRequest((2,), 4, GREEDY))
        await asyncio.sleep(0.05)
        assert e.waiting == 1 and e.running == 1
        hog.cancel()
        done = await asyncio.wait_for(waiting.collect(), 10)
    finally:
        e.close()
    assert list(done.token_ids) == reference((2,), 4)


async def test_full_queue_refuses_and_too_long_prompt_is_a_bad_request() -> None:
    runner = Runner(1, capacity=16)
    runner.gate.clear()  # hold the worker: nothing finishes
    e = engine(runner, max_running=1, queue_size=1)
    try:
        a = e.submit(GenerationRequest((1,), 4, GREEDY))
        await asyncio.sleep(0.05)  # a is admitted (prefill blocked on the gate)
        b = e.submit(GenerationRequest((2,), 4, GREEDY))
        with pytest.raises(QueueFullError):
            e.submit(GenerationRequest((3,), 4, GREEDY))
        with pytest.raises(BadRequestError, match="16 tokens"):
            e.submit(GenerationRequest(tuple(range(1, 17)), 4, GREEDY))
        runner.gate.set()
        assert len((await a.collect()).token_ids) == 4
        assert len((await b.collect()).token_ids) == 4
    finally:
        runner.gate.set()
        e.close()


async def test_max_tokens_is_capped_by_the_limit_and_the_context() -> None:
    e = engine(Runner(1, capacity=10), max_tokens=6)
    try:
        capped = await e.submit(GenerationRequest((1, 2), 100, GREEDY)).collect()
        tight = await e.submit(GenerationRequest(tuple(range(1, 8)), None, GREEDY)).collect()
    finally:
        e.close()
    assert capped.completion_tokens == 6
    assert tight.completion_tokens == 3  # 7 prompt tokens + 3 = the context of 10


async def test_eos_and_stop_sequences_end_with_stop() -> None:
    prompt = (5,)
    ref = reference(prompt, 8)
    assert ref[3] not in ref[:3]
    eos_engine = Engine(Runner(1), text, frozenset({ref[3]}), EngineLimits(), name="eos")
    stop_engine = engine(Runner(1))
    try:
        by_eos = await eos_engine.submit(GenerationRequest(prompt, 8, GREEDY)).collect()
        stop = text(ref[4:6])
        by_stop = await stop_engine.submit(
            GenerationRequest(prompt, 8, GREEDY, stop=(stop,))).collect()
    finally:
        eos_engine.close()
        stop_engine.close()
    assert (by_eos.finish_reason, by_eos.token_ids) == ("stop", tuple(ref[:4]))
    assert by_eos.text == text(ref[:3])
    assert by_stop.finish_reason == "stop"
    assert by_stop.text == text(ref[:4])


class Recorder:
    def __init__(self) -> None:
        self.states: list[tuple[int, int]] = []
        self.first = 0
        self.next = 0
        self.done: list[tuple[int, int, str]] = []

    def scheduled(self, running: int, waiting: int) -> None:
        self.states.append((running, waiting))

    def first_token(self, seconds: float) -> None:
        self.first += 1

    def next_token(self, seconds: float) -> None:
        self.next += 1

    def finished(self, seconds: float, prompt_tokens: int, generated_tokens: int,
                 reason: str) -> None:
        self.done.append((prompt_tokens, generated_tokens, reason))


async def test_observer_sees_timings_counts_and_an_idle_engine_at_the_end() -> None:
    rec = Recorder()
    e = Engine(Runner(2), text, frozenset(), EngineLimits(max_running=2), rec, name="obs")
    try:
        await asyncio.gather(e.submit(GenerationRequest((1, 2), 5, GREEDY)).collect(),
                             e.submit(GenerationRequest((3,), 3, GREEDY)).collect())
        for _ in range(100):
            if rec.states and rec.states[-1] == (0, 0):
                break
            await asyncio.sleep(0.01)
    finally:
        e.close()
    assert (rec.first, rec.next) == (2, 4 + 2)
    assert sorted(rec.done) == [(1, 3, "length"), (2, 5, "length")]
    assert (2, 0) in rec.states  # both ran together
    assert rec.states[-1] == (0, 0)  # the gauges do not stay at the last batch


class _Refuses:
    """A grammar that allows no token after the first: its sequence must fail alone."""

    def __init__(self) -> None:
        self.steps = 0

    def allowed(self, vocab_size: int, remaining: int | None = None) -> np.ndarray:
        self.steps += 1
        return np.full(vocab_size, self.steps < 3)

    def advance(self, token_id: int) -> None:
        pass


async def test_one_sequences_failed_choice_leaves_the_others_running() -> None:
    runner = Runner(3)
    e = engine(runner, max_running=3)
    try:
        good = [e.submit(GenerationRequest((i + 1,), 15, GREEDY)) for i in range(2)]
        bad = e.submit(GenerationRequest((9,), 15, GREEDY, constraint=_Refuses()))
        results = await asyncio.gather(*(g.collect() for g in good))
        with pytest.raises(BadRequestError, match="allows no next token"):
            await bad.collect()
    finally:
        e.close()
    for i, r in enumerate(results):
        assert list(r.token_ids) == reference((i + 1,), 15)


class _Breaks(_Refuses):
    """A grammar whose matcher breaks (an exception that is no LlmosError) mid-answer."""

    def advance(self, token_id: int) -> None:
        if self.steps >= 2:
            raise RuntimeError("matcher state corrupted")


async def test_a_broken_constraint_fails_its_own_sequence_only() -> None:
    runner = Runner(3)
    e = engine(runner, max_running=3)
    try:
        good = [e.submit(GenerationRequest((i + 1,), 15, GREEDY, top_logprobs=2))
                for i in range(2)]
        bad = e.submit(GenerationRequest((9,), 15, GREEDY, constraint=_Breaks()))
        results = await asyncio.gather(*(g.collect() for g in good))
        with pytest.raises(LlmosError, match="matcher state corrupted"):
            await bad.collect()
        again = await e.submit(GenerationRequest((1,), 15, GREEDY)).collect()
    finally:
        e.close()
    for i, r in enumerate(results):
        assert list(r.token_ids) == reference((i + 1,), 15)
    assert list(again.token_ids) == reference((1,), 15)  # the engine serves on


class PoisonRunner(Runner):
    """Rows of sequences whose prompt starts with ``poison`` come back all NaN."""

    poison = 39

    def prefill(self, slot: int, token_ids: Sequence[int], interrupt: object = None,
                start: int = 0) -> np.ndarray:
        row = super().prefill(slot, token_ids, interrupt, start)
        return row if token_ids[0] != self.poison else np.full_like(row, np.nan)

    def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
        rows = super().decode(tokens, lengths)
        for slot in range(len(tokens)):
            if self.cache[slot][0] == self.poison:
                rows[slot] = np.nan
        return rows


async def test_a_sequence_that_fails_to_sample_fails_alone() -> None:
    """All-NaN logits for one sequence: its stream gets the error, the batch goes on."""
    runner = PoisonRunner(3)
    e = engine(runner, max_running=3)
    sampled = SamplingParams(temperature=0.7, seed=1)
    try:
        good = [e.submit(GenerationRequest((i + 1,), 20, sampled)) for i in range(2)]
        bad = e.submit(GenerationRequest((PoisonRunner.poison, 3), 20, sampled))
        results = await asyncio.gather(*(g.collect() for g in good), bad.collect(),
                                       return_exceptions=True)
    finally:
        e.close()
    assert [r.completion_tokens for r in results[:2]] == [20, 20]  # type: ignore[union-attr]
    assert isinstance(results[2], LlmosError) and "finite" in results[2].message


async def test_a_tiny_temperature_is_greedy_and_harms_no_other_stream() -> None:
    """temperature 1e-320 (in range) once made NaN probabilities that failed every
    sequence decoded with it; now it samples the arg max, and a neighbour streams on."""
    e = engine(Runner(2), max_running=2)
    try:
        tiny, other = await asyncio.gather(
            e.submit(GenerationRequest((5, 6), 15, SamplingParams(temperature=1e-320))).collect(),
            e.submit(GenerationRequest((7,), 15, SamplingParams(temperature=1.0, seed=3)))
            .collect())
    finally:
        e.close()
    assert list(tiny.token_ids) == reference((5, 6), 15)
    assert other.completion_tokens == 15


class LongPrefill(Runner):
    """Prompts starting with ``LONG`` take a prefill that runs until interrupted (or 30 s,
    the 'ran to the end' outcome); every prefill's prompt is recorded."""

    long = 38

    def __init__(self, slots: int) -> None:
        super().__init__(slots)
        self.started = threading.Event()
        self.outcomes: list[str] = []
        self.prompts: list[tuple[int, ...]] = []

    def prefill(self, slot: int, token_ids: Sequence[int], interrupt: object = None,
                start: int = 0) -> np.ndarray:
        self.prompts.append(tuple(token_ids))
        if token_ids[0] == self.long:
            assert isinstance(interrupt, Interrupt)
            stopped = threading.Event()
            interrupt.on_request(stopped.set)
            self.started.set()
            if stopped.wait(30):
                self.outcomes.append("interrupted")
                raise Interrupted
            self.outcomes.append("ran to the end")
        return super().prefill(slot, token_ids, interrupt, start)


async def test_a_deadline_passed_in_the_prefill_interrupts_it() -> None:
    """The deadline passes while the prompt is being read: the caller gets 504 at once,
    the prefill stops, and the next request is served."""
    runner = LongPrefill(2)
    e = engine(runner, max_running=2)
    try:
        late = e.submit(GenerationRequest((LongPrefill.long, 1), 5, GREEDY))
        late.expire_after(0.2, first_only=False)
        with pytest.raises(InferenceTimeoutError):
            await late.collect()
        for _ in range(500):
            if runner.outcomes:
                break
            await asyncio.sleep(0.01)
        assert runner.outcomes == ["interrupted"]
        after = await e.submit(GenerationRequest((4, 5), 6, GREEDY)).collect()
    finally:
        e.close()
    assert list(after.token_ids) == reference((4, 5), 6)


def test_a_hook_added_after_the_request_runs_at_once() -> None:
    """A cancel that comes before the decoder hooks its run: the run stops at once."""
    interrupt = Interrupt()
    interrupt.request()
    calls: list[str] = []
    interrupt.on_request(lambda: calls.append("hooked late"))
    assert calls == ["hooked late"]


async def test_a_deadline_passed_in_the_queue_is_never_prefilled() -> None:
    """One slot, held by a long prefill; a queued request whose deadline passes is
    answered 504 and leaves the queue: its prompt is never run."""
    runner = LongPrefill(1)
    e = engine(runner, max_running=1)
    try:
        holder = e.submit(GenerationRequest((LongPrefill.long, 2), 3, GREEDY))
        await asyncio.get_running_loop().run_in_executor(None, runner.started.wait, 10)
        queued = e.submit(GenerationRequest((7, 7, 7), 3, GREEDY))
        queued.expire_after(0.1, first_only=True)
        with pytest.raises(InferenceTimeoutError):
            await queued.collect()
        holder.cancel()
        after = await e.submit(GenerationRequest((4,), 3, GREEDY)).collect()
    finally:
        e.close()
    assert after.completion_tokens == 3
    assert (7, 7, 7) not in runner.prompts
    assert runner.outcomes == ["interrupted"]


async def test_a_streams_deadline_covers_only_its_first_token() -> None:
    """The decoding stalls past the deadline after the first token: the stream goes on."""
    runner = Runner(1)
    e = engine(runner, max_running=1)
    try:
        gen = e.submit(GenerationRequest((3,), 8, GREEDY))
        gen.expire_after(2.0, first_only=True)
        first = await anext(gen)
        runner.gate.clear()  # the next steps wait, past the deadline
        await asyncio.sleep(2.5)
        runner.gate.set()
        rest = [chunk async for chunk in gen]
    finally:
        runner.gate.set()
        e.close()
    assert [t for c in (first, *rest) for t in c.token_ids] == reference((3,), 8)


async def test_a_cached_prefix_is_restored_and_only_the_rest_prefilled() -> None:
    runner = Runner(2, prefixes=True)
    e = engine(runner, max_running=2)
    system = tuple(range(1, 11))  # 10 tokens: two blocks of 4 are reusable
    try:
        first = await e.submit(GenerationRequest((*system, 20), 5, GREEDY)).collect()
        second = await e.submit(GenerationRequest((*system, 21, 22), 5, GREEDY)).collect()
    finally:
        e.close()
    assert list(first.token_ids) == reference((*system, 20), 5)
    assert list(second.token_ids) == reference((*system, 21, 22), 5)
    prefills = [n for kind, n in runner.calls if kind == "prefill"]
    assert prefills == [11, 12 - 8]  # the second read 8 tokens from the cache
    assert runner.prefixes is not None  # what each slot held at its prompt and at its end
    assert runner.prefixes[1] == (*system, 20, *first.token_ids[:4])


async def test_a_joining_long_prompt_is_prefilled_between_decode_steps() -> None:
    """While one stream decodes, a long prompt joins: it is read in chunks of at most
    ``prefill_chunk`` tokens with a decode step after each, so the running stream never
    waits for more than one chunk; every token is what the unchunked reference gives."""
    runner = Runner(3, capacity=256, delay_s=0.001)
    e = engine(runner, max_running=3, prefill_chunk=8)
    long_prompt = tuple((i * 7) % 37 + 1 for i in range(100))
    try:
        streaming = e.submit(GenerationRequest((1,), 120, GREEDY))
        await anext(streaming)
        short = e.submit(GenerationRequest((2, 3), 6, GREEDY))  # finishes mid-prefill
        joining = await e.submit(GenerationRequest(long_prompt, 5, GREEDY)).collect()
        rest = [c async for c in streaming]
        assert list((await short.collect()).token_ids) == reference((2, 3), 6)
    finally:
        e.close()
    assert list(joining.token_ids) == reference(long_prompt, 5)
    assert [t for c in rest for t in c.token_ids] == reference((1,), 120)[1:]
    assert runner.calls[0] == ("prefill", 1)  # the streaming one, alone
    calls = runner.calls[1:]
    chunks = [n for kind, n in calls if kind == "prefill"]
    assert sum(chunks) == 2 + 100 and max(chunks) == 8 and len(chunks) >= 1 + 100 // 8
    between, gaps = 0, []
    for kind, n in calls:
        if kind == "decode":
            gaps.append(between)
            between = 0
        else:
            between += n
    assert max(gaps) <= 8, "a running stream waited for more than one chunk"


async def test_a_prompt_cancelled_between_chunks_frees_its_slot() -> None:
    runner = Runner(2, capacity=256, delay_s=0.002)
    e = engine(runner, max_running=2, prefill_chunk=4)
    try:
        streaming = e.submit(GenerationRequest((1,), 200, GREEDY))
        await anext(streaming)
        doomed = e.submit(GenerationRequest(tuple(range(1, 201)), 5, GREEDY))
        await asyncio.sleep(0.05)
        doomed.cancel()
        after = await asyncio.wait_for(e.submit(GenerationRequest((4, 5), 6, GREEDY)).collect(),
                                       10)
        streaming.cancel()
    finally:
        e.close()
    assert list(after.token_ids) == reference((4, 5), 6)
    assert sum(n for kind, n in runner.calls if kind == "prefill" and n == 4) < 200


async def test_prompts_that_arrive_during_a_whole_prefill_are_chunked_once_it_runs() -> None:
    """Nothing runs, so the first prompt is read whole; the ones that arrived meanwhile
    are read in chunks with decode steps between them, not whole one after another."""
    runner = Runner(3, capacity=128)
    runner.gate.clear()
    e = engine(runner, max_running=3, prefill_chunk=8)
    prompts = [tuple((7 * i + k) % 37 + 1 for k in range(40)) for i in range(3)]
    try:
        first = e.submit(GenerationRequest(prompts[0], 20, GREEDY))
        await asyncio.sleep(0.05)  # its prefill is waiting on the gate
        others = [e.submit(GenerationRequest(p, 20, GREEDY)) for p in prompts[1:]]
        await asyncio.sleep(0.05)
        runner.gate.set()
        results = [await g.collect() for g in (first, *others)]
    finally:
        runner.gate.set()
        e.close()
    for p, r in zip(prompts, results, strict=True):
        assert list(r.token_ids) == reference(p, 20)
    assert runner.calls[0] == ("prefill", 40)
    assert all(n <= 8 for kind, n in runner.calls[1:] if kind == "prefill")
    assert ("decode", 1) in runner.calls[:4]  # the first stream went on after one chunk


def test_a_chunk_is_never_one_token_alone_after_others() -> None:
    assert [chunk_size(t, 8) for t in (1, 2, 8, 9, 10, 20)] == [1, 2, 8, 9, 8, 8]
    assert chunk_size(5, None) == 5 and chunk_size(5, 1) == 2 and chunk_size(3, 1) == 3
    for todo in range(2, 40):
        for budget in range(1, 12):
            left, sizes = todo, []
            while left:
                sizes.append(chunk_size(left, budget))
                left -= sizes[-1]
            assert min(sizes) >= 2 and max(sizes) <= max(budget, 2) + 1, (todo, budget, sizes)


async def test_a_prompt_cached_with_its_logits_is_not_prefilled_at_all() -> None:
    runner = Runner(2, prefixes=True)
    e = engine(runner, max_running=2)
    try:
        first = await e.submit(GenerationRequest((5, 6, 7), 4, GREEDY)).collect()
        calls = len(runner.calls)
        again = await e.submit(GenerationRequest((5, 6, 7), 4, GREEDY)).collect()
    finally:
        e.close()
    assert list(first.token_ids) == list(again.token_ids) == reference((5, 6, 7), 4)
    assert ("prefill", 3) not in runner.calls[calls:]
    assert [kind for kind, _ in runner.calls[calls:]] == ["decode"] * 3


def test_a_model_entry_sets_the_engine_limits() -> None:
    cfg = ModelConfig("m", Path("-"), max_running=3, queue_size=9, max_tokens=70,
                      prefill_chunk=40, prefix_cache_mb=2, prefix_block_tokens=8)
    assert engine_limits(cfg) == EngineLimits(max_running=3, queue_size=9, max_tokens=70,
                                              prefill_chunk=40, prefix_cache_bytes=2 << 20,
                                              prefix_block_tokens=8)


async def test_the_engine_thread_runs_below_the_event_loop(priorities: Priorities) -> None:
    """The engine is built on the loop's thread; its worker lowers itself (off: it stays)."""
    seen: list[int] = []

    class Recording(Runner):
        def decode(self, tokens: Sequence[int], lengths: Sequence[int]) -> np.ndarray:
            seen.append(priorities.nice_of())
            return super().decode(tokens, lengths)

    want = priorities.base if priorities.workers is None else priorities.workers
    e = engine(Recording(2))
    try:
        done = await e.submit(GenerationRequest((3, 4, 5), 4, GREEDY)).collect()
        assert priorities.nice_of(e._thread.native_id) == want
    finally:
        e.close()
    assert list(done.token_ids) == reference((3, 4, 5), 4)
    assert seen and set(seen) == {want}
    assert priorities.nice_of() == priorities.base
