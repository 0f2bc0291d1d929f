"""The serving backend of ``causal-lm`` packs (registered by ``llmos.app``)."""

from __future__ import annotations

from llmos.config import ModelConfig
from llmos.llm.engine import EngineLimits
from llmos.llm.metrics import metrics_for
from llmos.llm.model import LanguageModel, load_language_model
from llmos.serving.backend import ModelContext

KIND = "causal-lm"


def engine_limits(cfg: ModelConfig) -> EngineLimits:
    """The engine limits a model entry's settings ask for."""
    return EngineLimits(max_running=cfg.max_running, queue_size=cfg.queue_size,
                        max_tokens=cfg.max_tokens, prefill_chunk=cfg.prefill_chunk,
                        prefix_cache_bytes=cfg.prefix_cache_mb * 2**20,
                        prefix_block_tokens=cfg.prefix_block_tokens)


def causal_lm_backend(ctx: ModelContext) -> LanguageModel:
    """Load a causal LM with the model entry's limits; its metrics go on the app's registry.

    On a GPU the matrix work runs there (onnxruntime's CUDA provider); the KV cache and the
    attention stay in host memory (``llmos.llm.decoder``)."""
    cfg = ctx.config
    observer = metrics_for(ctx.metrics.registry).observer(cfg.name)
    return load_language_model(ctx.manifest, ctx.files, ctx.options, engine_limits(cfg),
                               observer, cfg.name, release=ctx.release,
                               timeout_s=ctx.timeout_s)
