"""The data plane without any transport: the composition root started, its methods called.

What HTTP clients get (tests/serving/test_api.py) is this plus decoding and encoding; here
the rules themselves: the one validation, the batching hint kept balanced when a request
fails, the repository's limits, embeddings, and what is not the right kind of model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from llmos import config
from llmos.app import LlmOs
from llmos.errors import BadRequestError, ForbiddenError, NotFoundError
from llmos.hw.awake import DEVICE, current_latency
from llmos.serving.backend import TensorModel
from llmos.serving.codec import InferRequest
from llmos.state import ModelState
from llmos.systemd import Notifier

from .conftest import Packs, standard_config, write_config


async def _request(inputs: dict[str, np.ndarray], outputs: tuple[str, ...] | None = None
                   ) -> InferRequest:
    return InferRequest(inputs=inputs, outputs=outputs)


@pytest.fixture
async def root(packs: Packs, tmp_path: Path) -> AsyncIterator[LlmOs]:
    cfg = config.load(standard_config(packs, tmp_path, control=False), environ={})
    server = LlmOs(cfg, notifier=Notifier({}))
    await server.start()
    yield server
    await server.stop()


async def test_infer_answers_and_validates_once(root: LlmOs, packs: Packs) -> None:
    plane = root.dataplane
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = await plane.infer("alpha", None, _request({"x": x}))
    np.testing.assert_allclose(result.outputs["y"], x @ packs.w + packs.b, rtol=1e-5)
    assert (result.model, tuple(result.output_names)) == ("alpha", ("y", "s"))
    model = root.registry.served("alpha")
    assert isinstance(model, TensorModel)
    batcher = model.batcher
    for bad, message in [({"x": x.astype(np.int64)}, "datatype INT64 given"),
                         ({"x": x[:, :3]}, "does not match the model's [-1, 4]"),
                         ({}, "needs input(s) x")]:
        with pytest.raises(BadRequestError) as err:
            await plane.infer("alpha", None, _request(bad))
        assert message in err.value.message
    with pytest.raises(BadRequestError, match="no output"):
        await plane.infer("alpha", None, _request({"x": x}, ("nope",)))
    assert batcher._arriving == 0  # every refused request gave its expectation back


async def test_models_that_cannot_answer(root: LlmOs) -> None:
    plane = root.dataplane
    with pytest.raises(NotFoundError):
        await plane.infer("nobody", None, _request({}))
    assert plane.model_status("broken").state is ModelState.FAILED
    with pytest.raises(BadRequestError, match="not an embedding model"):
        await plane.embed("alpha", ["text"])
    assert {st.name for st in plane.index(only_ready=True)} == {"alpha", "slow", "deadline"}
    assert {(c.name, c.kind) for c in plane.catalog()} == {
        ("alpha", "tensor"), ("slow", "tensor"), ("deadline", "tensor")}  # broken: not listed
    with pytest.raises(BadRequestError, match="not an embedding model"):
        await plane.count_tokens("alpha", ["text"])


async def test_requests_keep_the_cores_awake(root: LlmOs) -> None:
    """Each inference request's arrival holds the CPU latency request (``llmos.hw.awake``),
    here on the kernel's own device where this process may open it."""
    awake = root.awake
    assert not awake.held and awake.hold_s == 1.0  # the default; nothing asked yet
    x = np.ones((1, 4), dtype=np.float32)
    await root.dataplane.infer("alpha", None, _request({"x": x}))
    if awake.unavailable is None:
        assert awake.held
        assert current_latency() == 0
    else:
        assert not awake.held and str(DEVICE) in awake.unavailable
    samples = {s.name: s.value for s in root.metrics.samples()}
    assert samples["llmos_cpu_awake"] == float(awake.held)
    await root.stop()
    assert not awake.held


async def test_the_repository_extension_follows_the_configuration(root: LlmOs) -> None:
    with pytest.raises(ForbiddenError):
        await root.dataplane.unload("alpha")
    assert root.registry.status("alpha").state is ModelState.READY


async def test_embed_gives_unit_vectors_that_rank_meaning(minilm_demo: dict[str, Path],
                                                          tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "minilm.toml",
        {"server": {"host": "127.0.0.1", "port": 0, "admin_port": 0},
         "keys": {"provider": "keyfile", "keyfile": str(minilm_demo["keyfile"]),
                  "allow_dev_key": True}},
        [{"name": "minilm", "pack": str(minilm_demo["minilm-fp32"])}])
    server = LlmOs(config.load(path, environ={}), notifier=Notifier({}))
    await server.start()
    try:
        vectors = await server.dataplane.embed("minilm", [
            "A man is playing a guitar on the stage.",
            "Someone performs music with a guitar in front of an audience.",
            "The stock market fell sharply after the announcement."])
        plane = server.dataplane
        width, cards = plane.embedding_width("minilm"), plane.catalog()
        # [CLS] a man is playing a guitar on the stage . [SEP]; long texts are truncated
        guitar = "A man is playing a guitar on the stage."
        tokens = [await plane.count_tokens("minilm", [guitar]),
                  await plane.count_tokens("minilm", [guitar] * 2),
                  await plane.count_tokens("minilm", ["word " * 1000])]
    finally:
        await server.stop()
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-4)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    assert width == 384 and tokens == [12, 24, 256]
    assert [(c.name, c.kind, c.dimensions, c.max_model_len) for c in cards] == [
        ("minilm", "embedding", 384, 256)]
