"""Open Inference Protocol v2 over HTTP, with the model-repository and binary tensor data
extensions (JSON bodies, or JSON followed by raw tensors: ``serving.binary_tensors``).

Health and readiness answer 200 for true and 400 for false (the protocol's "4xx means
false", as Triton does), with a small JSON body saying why.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llmos import __version__
from llmos.errors import BadRequestError
from llmos.pack.manifest import TensorSpec
from llmos.serving import binary_tensors, codec
from llmos.serving.backend import PLATFORMS
from llmos.state import ModelState
from llmos.web.admission import decode, read_body
from llmos.web.api import public
from llmos.web.keys import DATAPLANE, IMAGE_VERSION

EXTENSIONS = ("model_repository", binary_tensors.EXTENSION)


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=codec.dumps(doc), content_type="application/json")


def _specs(specs: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
    return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]


async def server_metadata(request: web.Request) -> web.Response:
    doc = {"name": "llmos", "version": __version__, "extensions": list(EXTENSIONS)}
    if image_version := request.app.get(IMAGE_VERSION):  # which OS version answers
        doc["image_version"] = image_version
    return json_response(doc)


async def live(request: web.Request) -> web.Response:
    return json_response({"live": True})


def readiness(request: web.Request, not_ready: int) -> web.Response:
    """Ready or not, the state and the reasons; ``not_ready`` is the status when not: OIP
    v2 says 400, a load balancer's ``/health/ready`` 503."""
    h = request.app[DATAPLANE].health()
    return json_response({"ready": h.ready, "status": h.overall.value,
                          "reasons": [public.text(r) for r in h.reasons]},
                         200 if h.ready else not_ready)


async def ready(request: web.Request) -> web.Response:
    return readiness(request, 400)


async def model_metadata(request: web.Request) -> web.Response:
    name, version = request.match_info["model"], request.match_info.get("version")
    plane = request.app[DATAPLANE]
    manifest = plane.metadata(name, version)
    return json_response({
        "name": name,
        "versions": list(plane.versions(name)),
        "platform": PLATFORMS.get(manifest.runtime, manifest.runtime),
        "inputs": _specs(manifest.inputs),
        "outputs": _specs(manifest.outputs),
    })


async def model_ready(request: web.Request) -> web.Response:
    name, version = request.match_info["model"], request.match_info.get("version")
    st = request.app[DATAPLANE].model_status(name, version)
    ok = st.state is ModelState.READY
    doc: dict[str, Any] = {"name": name, "ready": ok, "state": st.state.value}
    if st.reason:
        doc["reason"] = public.text(st.reason)
    return json_response(doc, 200 if ok else 400)


class _Body:
    """The request body, decoded when the data plane awaits it (after the batching hint;
    read with its deadline, parsed off the loop when large: ``web.admission.decode``); the
    client's choice of binary or JSON outputs is kept here for the encoder."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self.wire: binary_tensors.WireRequest | None = None

    async def read(self) -> codec.InferRequest:
        header = self._request.headers.get(binary_tensors.HEADER_LENGTH)
        self.wire = await decode(self._request,
                                 lambda body: binary_tensors.decode_request(body, header))
        return self.wire.request


async def infer(request: web.Request) -> web.Response:
    """The hot path: decode, call the data plane, encode. Nothing else."""
    match = request.match_info
    body = _Body(request)
    result = await request.app[DATAPLANE].infer(match["model"], match.get("version"),
                                                body.read())
    assert body.wire is not None  # the data plane answers only after decoding the body
    answer = binary_tensors.encode_response(result.model, result.version, result.id,
                                            result.outputs, result.output_names,
                                            body.wire.binary)
    return web.Response(body=answer.body, content_type=answer.content_type,
                        headers=answer.headers)


async def _optional_json(request: web.Request) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        return {}
    doc = codec.parse_json(raw)
    if not isinstance(doc, dict):
        raise BadRequestError("request body must be a JSON object", "send {} or nothing")
    return doc


async def repository_index(request: web.Request) -> web.Response:
    doc = await _optional_json(request)
    rows = [{"name": st.name, "version": st.version, "state": st.state.value,
             "reason": st.reason}
            for st in request.app[DATAPLANE].index(only_ready=doc.get("ready") is True)]
    return json_response(rows)


async def repository_load(request: web.Request) -> web.Response:
    st = await request.app[DATAPLANE].load(request.match_info["model"], _optional_json(request))
    return json_response(st.to_dict())


async def repository_unload(request: web.Request) -> web.Response:
    st = await request.app[DATAPLANE].unload(request.match_info["model"],
                                             _optional_json(request))
    return json_response(st.to_dict())


def setup(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2", server_metadata)
    r.add_get("/v2/health/live", live)
    r.add_get("/v2/health/ready", ready)
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        r.add_get(base, model_metadata)
        r.add_get(base + "/ready", model_ready)
        r.add_post(base + "/infer", infer)
    r.add_post("/v2/repository/index", repository_index)
    r.add_post("/v2/repository/models/{model}/load", repository_load)
    r.add_post("/v2/repository/models/{model}/unload", repository_unload)
