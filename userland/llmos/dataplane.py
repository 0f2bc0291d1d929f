"""The data plane: what every transport calls, whatever its wire format.

An HTTP handler decodes, calls one method here and encodes the answer; a second transport
(gRPC, say) would do the same against the same methods. Here live the request's rules,
once: which model serves it (and what it is not), the validation of its tensors, the
batching hint (``Batcher.expect``: a request is coming, its body is still arriving), the
deadline, the limits of the repository extension, and the per-request metrics.

- ``health``, ``model_status``, ``metadata``, ``index``: what the server and its models are;
- ``infer``: a tensor request (OIP v2) through the model's batcher;
- ``embed``: texts to vectors through an embedding model's batcher (``embedding_width`` and
  ``count_tokens`` for what an API reports beside them);
- ``catalog``: every model serving now, with its kind (a client's model list);
- ``complete`` and ``chat``: a causal LM's generation (the OpenAI surface): ``n`` choices,
  each with its own sampler, penalties and grammar (``llmos.llm.choices``);
- ``load`` and ``unload``: the repository extension, when the configuration allows it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from llmos.errors import (
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
)
from llmos.llm.backend import KIND as CAUSAL_LM
from llmos.llm.chat import Message
from llmos.llm.choices import Answer, submit
from llmos.llm.model import LanguageModel
from llmos.llm.openai_features import Features
from llmos.llm.openai_protocol import CompletionParams, FieldError
from llmos.llm.tools import prompt_text
from llmos.pack.embedding import EMBEDDING, TEXT, EmbeddingConfig
from llmos.pack.manifest import Manifest
from llmos.registry import ModelRegistry
from llmos.runtimes.embedding import EmbeddingRuntime
from llmos.runtimes.validation import check_inputs, check_outputs
from llmos.serving.backend import TensorModel
from llmos.serving.codec import InferRequest
from llmos.serving.metrics import ServingMetrics
from llmos.serving.slices import rows_of
from llmos.state import Health, ModelState, ModelStatus

Tensors = dict[str, np.ndarray]
T = TypeVar("T")
EMBEDDING_KIND = "embedding"


@dataclass(frozen=True)
class InferResult:
    """A tensor model's answer, with what an encoder needs to label it."""

    model: str
    version: str
    id: str | None
    outputs: Tensors
    output_names: Sequence[str]


@dataclass(frozen=True)
class ModelCard:
    """A model serving now, as a client plans with it: its kind (``causal-lm``,
    ``embedding`` or ``tensor``) and, where they apply, its limits."""

    name: str
    kind: str
    created: int  # Unix time: a language model's own, else when it became READY
    max_model_len: int | None = None  # tokens (longer embedding inputs are truncated)
    dimensions: int | None = None  # an embedding model's vector width


def _discard(request: Awaitable[object] | None) -> None:
    """A transport's pending body that will not be read (its coroutine closed unawaited)."""
    if isinstance(request, Coroutine):
        request.close()


class DataPlane:
    """Transport-neutral inference over the registry's models."""

    def __init__(self, registry: ModelRegistry, metrics: ServingMetrics,
                 health: Callable[[], Health], arrived: Callable[[], None] = lambda: None
                 ) -> None:
        """``arrived``: told of each inference request as it arrives (the cores are kept
        awake while they come: ``llmos.hw.awake``)."""
        self.registry = registry
        self.metrics = metrics
        self.health = health
        self._arrived = arrived
        self._control = bool(registry.config["server.repository_control"])
        self._max_rows = int(registry.config["server.max_request_rows"])
        self._offload = int(registry.config["server.offload_bytes"])

    # --- the server and its models ------------------------------------------------------
    def model_status(self, name: str, version: str | None = None) -> ModelStatus:
        """The model's (or one version's) state; NotFoundError for a version this model
        does not have now."""
        return self.registry.status(name, version)

    def versions(self, name: str) -> tuple[str, ...]:
        """The model's versions now (two while an update loads or retires one)."""
        return self.registry.versions(name)

    def metadata(self, name: str, version: str | None = None) -> Manifest:
        return self.registry.manifest(name, version)

    def index(self, only_ready: bool = False) -> tuple[ModelStatus, ...]:
        return tuple(st for st in self.registry.statuses()
                     if not only_ready or st.state is ModelState.READY)

    # --- tensors ------------------------------------------------------------------------
    async def infer(self, name: str, version: str | None,
                    request: Awaitable[InferRequest]) -> InferResult:
        """Validate and run one request; ``request`` is awaited after the model's batcher
        was told one is coming (so it may wait for it rather than run a smaller batch)."""
        started = time.perf_counter()
        self._arrived()
        try:
            model = self._tensor_model(name, version)
        except BaseException:
            _discard(request)
            raise
        with self.registry.leases.hold(model):  # a replaced version stays until its requests end
            return await self._infer(model, request, started)

    def _tensor_model(self, name: str, version: str | None) -> TensorModel:
        served = self.registry.served(name, version)
        if not isinstance(served, TensorModel):
            kind = self.registry.status(name).kind
            raise BadRequestError(f"model {name!r} is a {kind} model, not a tensor model",
                                  "use the OpenAI-compatible API under /v1 for it")
        return served

    async def _infer(self, model: TensorModel, request: Awaitable[InferRequest],
                     started: float) -> InferResult:
        batcher = model.batcher
        batcher.expect()
        expected = True
        try:
            req = await request
            inputs = check_inputs(model.name, model.inputs, req.inputs)
            self._check_rows(inputs)
            if req.outputs is not None:
                check_outputs(model.name, req.outputs, model.outputs)
            expected = False  # submit consumes the expectation, whatever happens next
            outputs = await model.infer(inputs, req.deadline(model.timeout_s), expected=True)
        except BaseException:
            if expected:
                batcher.unexpect()
            model.metrics.request(False, time.perf_counter() - started)
            raise
        model.metrics.request(True, time.perf_counter() - started)
        return InferResult(model.name, model.version, req.id, outputs,
                           req.outputs or model.output_names)

    def _check_rows(self, inputs: Tensors) -> None:
        rows = rows_of(inputs)
        if rows > self._max_rows:
            raise PayloadTooLargeError(
                f"inputs: {rows} rows (dim 0) in one request, at most {self._max_rows}",
                "split the request, or raise server.max_request_rows")

    def _embedding_model(self, name: str) -> TensorModel:
        if self.registry.status(name).kind != EMBEDDING_KIND:
            raise FieldError("model", f"{name!r} is not an embedding model",
                             "pick a model whose kind is embedding (GET /v1/models)")
        return self._tensor_model(name, None)

    def embedding_width(self, name: str) -> int:
        """The length of an embedding model's vectors."""
        return int(self._embedding_model(name).outputs[0].shape[-1])

    async def count_tokens(self, name: str, texts: Sequence[str]) -> int:
        """The tokens an embedding model sees for ``texts`` (special tokens in, truncation
        applied): an API's usage. A few ms per long text: long ones are counted off the
        event loop."""
        model = self._embedding_model(name)
        runtime = model.runtimes[0]
        if not isinstance(runtime, EmbeddingRuntime):  # every embedding pack loads as one
            raise TypeError(f"model {name!r}: {type(runtime).__name__} counts no tokens")
        with self.registry.leases.hold(model):  # a replaced version stays until this ends
            return await self._off_loop(sum(len(t) for t in texts),
                                        lambda: runtime.count_tokens(texts))

    async def embed(self, name: str, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per text, from an embedding model."""
        self._embedding_model(name)

        async def request() -> InferRequest:
            return InferRequest(inputs={TEXT: np.array(list(texts), dtype=object)})

        result = await self.infer(name, None, request())
        return result.outputs[EMBEDDING]

    def catalog(self) -> tuple[ModelCard, ...]:
        """Every model serving now, with its kind and what a client may plan with."""
        cards = []
        for st in self.index(only_ready=True):
            try:
                served = self.registry.served(st.name)
            except (NotFoundError, NotReadyError):  # it stopped serving since
                continue
            if isinstance(served, LanguageModel):
                cards.append(ModelCard(served.name, CAUSAL_LM, served.created,
                                       max_model_len=served.context_length))
            elif isinstance(served, TensorModel) and served.manifest.kind == EMBEDDING_KIND:
                cfg = EmbeddingConfig.of(served.manifest)
                cards.append(ModelCard(st.name, EMBEDDING_KIND, int(st.since),
                                       max_model_len=cfg.max_length, dimensions=cfg.dim))
            else:
                cards.append(ModelCard(st.name, st.kind or "tensor", int(st.since)))
        return tuple(cards)

    # --- language models -------------------------------------------------------------------
    def language_model(self, name: str) -> LanguageModel:
        served = self.registry.served(name)
        if not isinstance(served, LanguageModel):
            raise FieldError("model", f"{name!r} is not a language model",
                             "tensor models are served under /v2")
        return served

    async def _off_loop(self, size: int, work: Callable[[], T]) -> T:
        """Tokenisation and chat templating of a long text run in a worker thread, so the
        event loop (health, other streams) is not held for them."""
        return await asyncio.to_thread(work) if size > self._offload else work()

    async def complete(self, lm: LanguageModel, prompt: str | tuple[int, ...],
                       params: CompletionParams, features: Features | None = None) -> Answer:
        """A completion of ``prompt`` (text, or token ids below the vocabulary size): its
        ``features.n`` choices, started. Called with no await after ``language_model``: the
        hold keeps ``lm``'s version loaded until they are submitted (``LanguageModel.busy``
        from then on)."""
        self._arrived()
        with self.registry.leases.hold(lm):
            if isinstance(prompt, str):
                text = prompt
                ids = await self._off_loop(len(text), lambda: lm.encode(text))
            else:
                ids = prompt
            if any(t >= lm.tokenizer.vocab_size for t in ids):
                raise FieldError("prompt", f"token ids must be below {lm.tokenizer.vocab_size}")
            return await submit(lm, ids, params, features or Features())

    async def chat(self, lm: LanguageModel, messages: Sequence[Message],
                   params: CompletionParams, features: Features | None = None) -> Answer:
        """The assistant's next message after ``messages`` (the model's chat template, with
        the tools offered written the template's own way where it has one)."""
        specials = lm.tokenizer.special_tokens
        for i, m in enumerate(messages):  # content never becomes the template's markup
            calls = json.dumps(list(m.tool_calls)) if m.tool_calls else ""
            found = next((t for t in specials if t in m.content or t in calls), None)
            if found is not None:
                raise FieldError(f"messages[{i}].content",
                                 f"contains the special token {found!r}",
                                 "special tokens are the chat template's markup; a message "
                                 "cannot open or close a turn")
        tools = features.tools if features else None

        def prompt() -> tuple[int, ...]:
            if lm.chat is None:
                return lm.encode(lm.chat_prompt(messages))  # refused: no chat template
            return lm.encode(prompt_text(lm.chat, messages, tools))

        size = sum(len(m.content) for m in messages)
        self._arrived()
        with self.registry.leases.hold(lm):
            ids = await self._off_loop(size, prompt)
            return await submit(lm, ids, params, features or Features())

    # --- the repository extension --------------------------------------------------------
    def _allowed(self, request: Awaitable[object] | None) -> None:
        if not self._control:
            _discard(request)
            raise ForbiddenError(
                "loading and unloading models is turned off on the inference API",
                "use the admin page (it authenticates), or set server.repository_control = "
                "true where everyone who reaches this port may load and unload models")

    async def load(self, name: str, request: Awaitable[object] | None = None) -> ModelStatus:
        """Load a model (``request``, the transport's body, is awaited once allowed)."""
        self._allowed(request)
        if request is not None:
            await request
        # shielded: a client that goes away does not leave the model half loaded
        return await asyncio.shield(self.registry.load(name))

    async def unload(self, name: str, request: Awaitable[object] | None = None) -> ModelStatus:
        self._allowed(request)
        if request is not None:
            await request
        return await asyncio.shield(self.registry.unload(name))
