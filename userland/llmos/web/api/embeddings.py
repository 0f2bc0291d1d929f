"""``POST /v1/embeddings`` (OpenAI) over the embedding models.

Decode (``llmos.llm.openai_embeddings``), call the data plane (``embed``, which takes
the texts through the model's batcher exactly as a v2 ``infer`` on its ``text`` input does:
same queue, same metrics, same vectors), encode. Errors take OpenAI's shape
(``llmos.web.api.openai.openai_errors``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from llmos.llm import openai_embeddings as emb
from llmos.llm import openai_protocol as proto
from llmos.web.api.openai import openai_errors
from llmos.web.keys import DATAPLANE

# Beyond these (numbers in the response, characters of text) a request's usage count and
# response body are made on a worker thread, not the event loop.
LARGE = 32 * 1024
LARGE_TEXT = 16 * 1024


async def create_embeddings(request: web.Request) -> web.Response:
    req = emb.parse_request(proto.parse_body(await request.read()))
    plane = request.app[DATAPLANE]
    emb.check_dimensions(req, plane.embedding_width(req.model))
    vectors = await plane.embed(req.model, req.texts)
    # Tokenizing (a few ms per long text) and formatting many vectors take long enough to
    # stall other requests: large ones run off the event loop.
    large = sum(len(t) for t in req.texts) > LARGE_TEXT or vectors.size > LARGE
    tokens = await asyncio.to_thread(plane.count_tokens, req.model, req.texts) if large \
        else plane.count_tokens(req.model, req.texts)
    args = (req.model, vectors, req.encoding_format, tokens)
    body = await asyncio.to_thread(emb.response_bytes, *args) if large else \
        emb.response_bytes(*args)
    return web.Response(body=body, content_type="application/json")


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/embeddings", openai_errors(create_embeddings))
