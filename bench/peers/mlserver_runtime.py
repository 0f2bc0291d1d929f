"""A Seldon MLServer custom runtime for the embedding model (the documented ``MLModel`` way).

``model-settings.json`` names ``bench.peers.mlserver_runtime.EmbeddingRuntime`` as the
implementation and the model folder as ``parameters.uri``.
"""

from __future__ import annotations

from pathlib import Path

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

from bench.peers.embedder import Embedder


class EmbeddingRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        uri = self.settings.parameters.uri if self.settings.parameters else None
        if not uri:
            raise ValueError("model-settings.json needs parameters.uri (the model folder)")
        self._embedder = Embedder(Path(uri))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        vectors = self._embedder.embed(texts)
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output("embedding", vectors)])
