"""A loaded causal LM: tokenizer, chat template and generation engine over one session."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from itertools import groupby

import numpy as np

from llmos.errors import BadRequestError, PackFormatError, PrepackedWeightsStillRead
from llmos.llm.chat import ChatTemplate, Message
from llmos.llm.decoder import Decoder, Session
from llmos.llm.engine import Engine, EngineLimits, EngineObserver
from llmos.llm.generation import Generation, GenerationRequest
from llmos.llm.prefixcache import PrefixCache
from llmos.pack.llm.packinfo import LLMInfo
from llmos.pack.manifest import Manifest
from llmos.pack.weights import WeightTable
from llmos.runtimes.base import RuntimeOptions
from llmos.serving.warmup import same_answer
from llmos.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)

WARMUP_PROMPT = (1, 2, 3, 4, 5, 6, 7, 8)


class LanguageModel:
    """What the OpenAI API serves: text in, streamed tokens out. ``close`` blocks."""

    def __init__(self, name: str, manifest: Manifest, info: LLMInfo, tokenizer: Tokenizer,
                 chat: ChatTemplate | None, engine: Engine, timeout_s: float | None = None
                 ) -> None:
        """``timeout_s``: a request's deadline (None: none), which the data plane sets."""
        self.name = name
        self.timeout_s = timeout_s
        self.manifest = manifest
        self.info = info
        self.tokenizer = tokenizer
        self.chat = chat
        self.engine = engine
        self.created = int(time.time())

    @property
    def context_length(self) -> int:
        return self.engine.context_length

    def encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text))

    def chat_prompt(self, messages: Sequence[Message]) -> str:
        if self.chat is None:
            raise BadRequestError(f"model {self.name!r} has no chat template",
                                  "use /v1/completions with a prompt instead")
        return self.chat.render(messages)

    def generate(self, request: GenerationRequest) -> Generation:
        return self.engine.submit(request)

    @property
    def busy(self) -> bool:
        """Generations not finished yet (they would fail if it closed now)."""
        return self.engine.busy

    def close(self) -> None:
        self.engine.close()


def _text(manifest: Manifest, files: Mapping[str, memoryview], name: str) -> bytes:
    try:
        return bytes(files[name])
    except KeyError:
        raise PackFormatError(f"causal-lm pack {manifest.name!r} has no file {name!r}",
                              "pack the model again") from None


def with_prepacking(options: RuntimeOptions) -> RuntimeOptions:
    """Prepacked weights unless the model's config said no or this machine's kernels read
    them in place anyway: without them, where the kernels prepack, onnxruntime dequantises
    every 8- or 4-bit weight block on every step, and decoding is ~45x slower
    (bench/llm_bench.py); the price is a second, unpinned copy of the matrices."""
    if options.prepack is False and not options.reads_in_place:  # costs nothing where it is
        log.warning("weight prepacking is off for this model: where this CPU's kernels "
                    "prepack (AVX2 and FMA), decoding is up to ~45x slower")
    return dataclasses.replace(options, prepack=options.prepacks(True))


def warm_up(decoder: Decoder, device: str) -> np.ndarray:
    """Run the model once before it is READY: a model that cannot run fails its load, not
    its first request.

    On a GPU, one small step of each kind (a prefill, a one-row and a two-row decode), so
    the first request pays none of the one-time set-up (library handles, kernel choice,
    first allocations). On the CPU that set-up is a few milliseconds (a first step 2-10 ms
    slower than the next, measured on SmolLM2) while every token costs ~1.5 s under
    emulation, where the full warm-up took 9 s of a boot: one one-token prefill there."""
    if device == "cpu":
        return decoder.prefill(0, WARMUP_PROMPT[:1])
    prompt = WARMUP_PROMPT[:2]
    logits = decoder.prefill(0, prompt)
    for rows in sorted({1, min(2, decoder.layout.slots)}):
        decoder.decode([prompt[0]] * rows, [len(prompt)] * rows)
    return logits


def prepacked_views(manifest: Manifest, files: Mapping[str, memoryview],
                    info: LLMInfo) -> list[memoryview]:
    """The parts of the weights file that only prepacked kernels read (``info.prepacked``):
    one view per run of such tensors in file order, the alignment padding between them
    included (the packer puts them first, in one run)."""
    table = WeightTable.from_extra(manifest.extra)
    if table is None or not info.prepacked:
        return []
    weights = files[table.file]
    wanted = set(info.prepacked)
    views = []
    for prepacked, run in groupby(table.entries, key=lambda e: e.name in wanted):
        if prepacked:
            *_, last = entries = list(run)
            views.append(weights[entries[0].offset:last.offset + last.nbytes])
    return views


def load_language_model(manifest: Manifest, files: Mapping[str, memoryview],
                        options: RuntimeOptions, limits: EngineLimits,
                        observer: EngineObserver | None = None,
                        name: str | None = None,
                        release: Callable[[list[memoryview]], int] | None = None,
                        timeout_s: float | None = None) -> LanguageModel:
    """Build and warm a LanguageModel from a causal-lm pack's decrypted files (blocking).

    With prepacked weights, onnxruntime keeps its own copy of the quantised matrices and
    never reads the originals again (verified: zeroing them leaves every answer the same):
    ``release`` then gives their pages back, so the model holds one copy of its weights.
    Where this CPU's kernels read them in place after all (no AVX2 and FMA), the warm-up
    prefill answers differently afterwards: ``PrepackedWeightsStillRead``, and the loader
    builds the model again with prepacking off."""
    from llmos.runtimes.onnx import open_session, run_options  # the onnxruntime adapter

    name = name or manifest.name
    options = with_prepacking(options)
    info = LLMInfo.of(manifest.extra)
    tokenizer = Tokenizer(_text(manifest, files, info.tokenizer))
    chat = None
    if info.chat_template:
        specials = {k: v for k, v in (("bos_token", info.bos_token),
                                      ("eos_token", info.eos_token)) if v is not None}
        chat = ChatTemplate(_text(manifest, files, info.chat_template).decode(), specials)
    started = time.perf_counter()
    session: Session = open_session(manifest, files, options)
    built = time.perf_counter()
    prefix: PrefixCache[np.ndarray] | None = None
    if limits.prefix_cache_bytes > 0:
        prefix = PrefixCache(limits.prefix_block_tokens, limits.prefix_cache_bytes)
    decoder = Decoder(session, info.decoder, slots=limits.max_running,
                      capacity=info.context_length, run_options=run_options, prefix=prefix)
    warm = warm_up(decoder, options.device)
    log.info("model %s: session built in %.2f s, warmed up in %.2f s", name,
             built - started, time.perf_counter() - built)
    if release is not None and options.prepack and options.device == "cpu":
        freed = release(prepacked_views(manifest, files, info))
        if freed and not same_answer({"logits": warm},
                                     {"logits": warm_up(decoder, options.device)}):
            raise PrepackedWeightsStillRead(name)
        log.info("model %s: %.0f MiB of weights released (onnxruntime holds them prepacked)",
                 name, freed / 2**20)
    engine = Engine(decoder, lambda ids: tokenizer.decode(ids), frozenset(info.eos_token_ids),
                    limits, observer, name)
    log.info("model %s: causal LM ready, %d slots of %d tokens (%.0f MiB of cache at most)",
             name, limits.max_running, info.context_length,
             decoder.layout.bytes_per_slot * limits.max_running / 2**20)
    return LanguageModel(name, manifest, info, tokenizer, chat, engine, timeout_s)
