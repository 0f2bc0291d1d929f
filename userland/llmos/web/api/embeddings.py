"""``POST /v1/embeddings`` (OpenAI) over the embedding models.

Decode (``llmos.llm.openai_embeddings``), call the data plane (``embed``, which takes
the texts through the model's batcher exactly as a v2 ``infer`` on its ``text`` input does:
same queue, same metrics, same vectors), encode. Errors take OpenAI's shape
(``llmos.web.api.openai.openai_errors``).
"""

from __future__ import annotations

from aiohttp import web

from llmos.llm import openai_embeddings as emb
from llmos.llm import openai_protocol as proto
from llmos.web.admission import decode, offload
from llmos.web.api.openai import openai_errors
from llmos.web.keys import DATAPLANE

# A float as JSON text ("%.9g" and a comma): the size that decides whether a response is
# formatted off the event loop (``server.offload_bytes``).
JSON_BYTES_PER_FLOAT = 12


async def create_embeddings(request: web.Request) -> web.Response:
    req = await decode(request, lambda body: emb.parse_request(proto.parse_body(body)))
    plane = request.app[DATAPLANE]
    emb.check_dimensions(req, plane.embedding_width(req.model))
    vectors = await plane.embed(req.model, req.texts)
    tokens = await plane.count_tokens(req.model, req.texts)  # long texts: off the loop
    body = await offload(request, vectors.size * JSON_BYTES_PER_FLOAT,
                         lambda: emb.response_bytes(req.model, vectors, req.encoding_format,
                                                    tokens))
    return web.Response(body=body, content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", openai_errors(create_embeddings))
