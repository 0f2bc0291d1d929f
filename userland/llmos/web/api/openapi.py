"""``GET /openapi.json``: the inference API's contract (OpenAPI 3.0).

The document is written here, next to the routes, and held to them by a test
(tests/hostile/test_openapi.py: every route of the API app is in it and nothing else is)
and by a property-based fuzz run (schemathesis) that checks every answer against it.
The model names served at the moment are given as examples, so a client (or a fuzzer)
finds the real models; the schemas themselves do not depend on them.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from llmos import __version__
from llmos.datatypes import V2_TO_NUMPY
from llmos.serving import codec
from llmos.web.api_keys import OPEN_PATHS
from llmos.web.keys import DATAPLANE, KEYS_REQUIRED

Doc = dict[str, Any]
JSON = "application/json"

# --- schemas ------------------------------------------------------------------------------
_ERROR: Doc = {  # llmos.web.errors
    "type": "object", "required": ["error", "hint", "type"],
    "properties": {"error": {"type": "string"}, "hint": {"type": "string"},
                   "type": {"type": "string"}, "param": {"type": "string"}}}
_OPENAI_ERROR: Doc = {  # llmos.web.api.openai
    "type": "object", "required": ["error"],
    "properties": {"hint": {"type": "string"}, "error": {
        "type": "object", "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": "string", "nullable": True},
                       "code": {"type": "integer"}}}}}
_TENSOR: Doc = {
    "type": "object", "required": ["name", "datatype", "shape", "data"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "datatype": {"type": "string", "enum": list(V2_TO_NUMPY)},
        "shape": {"type": "array", "maxItems": codec.MAX_DIMS,
                  "items": {"type": "integer", "minimum": 0}},
        "data": {"type": "array"},
        "parameters": {"type": "object"}}}
_INFER_REQUEST: Doc = {
    "type": "object", "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}}},
        "parameters": {"type": "object"}}}
_INFER_RESPONSE: Doc = {
    "type": "object", "required": ["model_name", "outputs"],
    "properties": {"model_name": {"type": "string"}, "model_version": {"type": "string"},
                   "id": {"type": "string"}, "outputs": {"type": "array", "items": _TENSOR}}}
_TENSOR_SPEC: Doc = {
    "type": "object", "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                   "shape": {"type": "array", "items": {"type": "integer"}}}}
_MODEL_METADATA: Doc = {
    "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
    "properties": {"name": {"type": "string"},
                   "versions": {"type": "array", "items": {"type": "string"}},
                   "platform": {"type": "string"},
                   "inputs": {"type": "array", "items": _TENSOR_SPEC},
                   "outputs": {"type": "array", "items": _TENSOR_SPEC}}}
_READY: Doc = {"type": "object", "required": ["ready"],
               "properties": {"ready": {"type": "boolean"}, "status": {"type": "string"},
                              "reasons": {"type": "array", "items": {"type": "string"}}}}
_MODEL_READY: Doc = {"type": "object", "required": ["name", "ready", "state"],
                     "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"},
                                    "state": {"type": "string"},
                                    "reason": {"type": "string"}}}
_MODEL_STATUS: Doc = {"type": "object", "required": ["name", "state"],
                      "properties": {"name": {"type": "string"}, "state": {"type": "string"},
                                     "version": {"type": "string"},
                                     "reason": {"type": "string"}}}
_HEALTH: Doc = {"type": "object", "required": ["status", "ready", "reasons", "models"],
                "properties": {"status": {"type": "string"}, "ready": {"type": "boolean"},
                               "reasons": {"type": "array", "items": {"type": "string"}},
                               "models": {"type": "object"},
                               "image_version": {"type": "string"}}}
_STOP: Doc = {"oneOf": [{"type": "string", "minLength": 1},
                        {"type": "array", "maxItems": 4,
                         "items": {"type": "string", "minLength": 1}}],
              "nullable": True}
_SAMPLING: Doc = {
    "model": {"type": "string", "minLength": 1},
    "max_tokens": {"type": "integer", "minimum": 1, "nullable": True},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2, "nullable": True},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1, "nullable": True},
    "top_k": {"type": "integer", "nullable": True},
    "seed": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1,
             "nullable": True},
    "n": {"type": "integer", "minimum": 1, "maximum": 8, "nullable": True},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": True},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2, "nullable": True},
    "stop": _STOP,
    "stream": {"type": "boolean", "nullable": True},
    "stream_options": {"type": "object", "nullable": True,
                       "properties": {"include_usage": {"type": "boolean"}}},
    "ignore_eos": {"type": "boolean", "nullable": True},
    "user": {"type": "string"},
}
_COMPLETION_REQUEST: Doc = {
    "type": "object", "required": ["model", "prompt"],
    "properties": {**_SAMPLING,
                   "logprobs": {"type": "integer", "minimum": 0, "maximum": 5,
                                "nullable": True},
                   "prompt": {"oneOf": [
        {"type": "string"},
        {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}]}}}
_MESSAGE: Doc = {
    "type": "object", "required": ["role", "content"],
    "properties": {"role": {"type": "string",
                            "enum": ["system", "user", "assistant", "developer", "tool"]},
                   "content": {"type": "string", "nullable": True},
                   "tool_calls": {"type": "array", "items": {"type": "object"}},
                   "tool_call_id": {"type": "string"}}}
_TOOL: Doc = {"type": "object", "required": ["type", "function"],
              "properties": {"type": {"type": "string", "enum": ["function"]},
                             "function": {"type": "object", "required": ["name"],
                                          "properties": {"name": {"type": "string"},
                                                         "description": {"type": "string"},
                                                         "parameters": {"type": "object"}}}}}
_CHAT_REQUEST: Doc = {
    "type": "object", "required": ["model", "messages"],
    "properties": {**_SAMPLING,
                   "max_completion_tokens": {"type": "integer", "minimum": 1,
                                             "nullable": True},
                   "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
                   "logprobs": {"type": "boolean", "nullable": True},
                   "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20,
                                    "nullable": True},
                   "response_format": {"type": "object", "nullable": True},
                   "tools": {"type": "array", "items": _TOOL, "nullable": True},
                   "tool_choice": {"oneOf": [
                       {"type": "string", "enum": ["auto", "none", "required"]},
                       {"type": "object"}], "nullable": True},
                   "parallel_tool_calls": {"type": "boolean", "nullable": True}}}
_USAGE: Doc = {"type": "object", "required": ["prompt_tokens", "completion_tokens",
                                             "total_tokens"],
               "properties": {k: {"type": "integer", "minimum": 0}
                              for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
_FINISH: Doc = {"type": "string", "enum": ["stop", "length", "tool_calls"]}
_COMPLETION: Doc = {
    "type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                   "created": {"type": "integer"}, "model": {"type": "string"},
                   "usage": _USAGE, "choices": {"type": "array", "items": {
                       "type": "object", "required": ["index", "finish_reason"],
                       "properties": {"index": {"type": "integer"},
                                      "text": {"type": "string"},
                                      "message": {"type": "object"},
                                      "finish_reason": _FINISH}}}}}
_MODEL_LIST: Doc = {
    "type": "object", "required": ["object", "data"],
    "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": {
        "type": "object", "required": ["id", "object", "created", "owned_by"],
        "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                       "created": {"type": "integer"}, "owned_by": {"type": "string"},
                       "kind": {"type": "string",
                                "enum": ["causal-lm", "embedding", "tensor"]},
                       "max_model_len": {"type": "integer"},
                       "dimensions": {"type": "integer"}}}}}}
_EMBEDDINGS_REQUEST: Doc = {  # llmos.llm.openai_embeddings
    "type": "object", "required": ["model", "input"],
    "properties": {"model": {"type": "string", "minLength": 1},
                   "input": {"oneOf": [{"type": "string"}, {
                       "type": "array", "minItems": 1, "maxItems": 2048,
                       "items": {"type": "string"}}]},
                   "encoding_format": {"type": "string", "enum": ["float", "base64"],
                                       "nullable": True},
                   "dimensions": {"type": "integer", "minimum": 1, "nullable": True},
                   "user": {"type": "string", "nullable": True}}}
_EMBEDDINGS: Doc = {
    "type": "object", "required": ["object", "data", "model", "usage"],
    "properties": {"object": {"type": "string"}, "model": {"type": "string"},
                   "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                             "properties": {k: {"type": "integer", "minimum": 0} for k in
                                            ("prompt_tokens", "total_tokens")}},
                   "data": {"type": "array", "items": {
                       "type": "object", "required": ["object", "index", "embedding"],
                       "properties": {"object": {"type": "string"},
                                      "index": {"type": "integer"},
                                      "embedding": {"oneOf": [
                                          {"type": "array", "items": {"type": "number"}},
                                          {"type": "string"}]}}}}}}


_UNAUTHORIZED: Doc = {  # llmos.web.api_keys.unauthorized
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "code": {"type": "string"}}}}}
_BEARER: Doc = {"type": "http", "scheme": "bearer",
                "description": "an API key (server.api_keys_file, or the llmos-api-keys "
                               "credential on the appliance)"}


# --- operations -----------------------------------------------------------------------------
def _json(schema: Doc, description: str) -> Doc:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(codes: tuple[int, ...], openai: bool = False) -> Doc:
    schema = {"anyOf": [_OPENAI_ERROR, _ERROR]} if openai else _ERROR
    return {str(c): _json(schema, _WHY[c]) for c in codes}


_WHY = {400: "the request is malformed (the error names the field)",
        403: "not allowed on this listener (server.repository_control)",
        404: "no such model or version",
        408: "the body did not arrive within server.body_timeout_s",
        413: "the body or its rows exceed the limits",
        422: "the model's pack cannot be served",
        503: "not ready, or at capacity (Retry-After says when to retry)",
        504: "no result within the request's deadline"}


def _op(summary: str, ok: Doc, *, body: Doc | None = None, errors: tuple[int, ...] = (),
        openai: bool = False, params: list[Doc] | None = None, tag: str = "v2") -> Doc:
    op: Doc = {"summary": summary, "tags": [tag], "responses": {"200": ok, **_errors(
        errors, openai)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, served: list[str]) -> Doc:
    """A path parameter; ``served``: the values that exist now (an enum: any other is a
    404, which every such operation documents)."""
    schema: Doc = {"type": "string", "minLength": 1}
    param: Doc = {"name": name, "in": "path", "required": True, "schema": schema}
    if served:
        param["example"] = served[0]
        schema["enum"] = list(served)
    return param


POST_ERRORS = (400, 408, 413, 503)


def _server_paths() -> Doc:
    """Health, metrics, this document and the v2 server-wide routes."""
    text = {"schema": {"type": "string"}}
    return {
        "/health": {"get": {"summary": "the server's health: status, reasons, each model",
                            "tags": ["health"],
                            "responses": {"200": _json(_HEALTH, "ready"),
                                          "503": _json(_HEALTH, "not (yet) ready")}}},
        "/health/live": {"get": _op("liveness: the process answers", _json({
            "type": "object", "properties": {"live": {"type": "boolean"}}}, "live"),
            tag="health")},
        "/health/ready": {"get": {"summary": "readiness, for load balancers", "tags": ["health"],
                                  "responses": {"200": _json(_READY, "ready"),
                                                "503": _json(_READY, "not ready")}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["metrics"],
                             "responses": {"200": {"description": "the exposition", "content": {
                                 "text/plain": text, "application/openmetrics-text": text}}}}},
        "/openapi.json": {"get": {"summary": "this document", "tags": ["meta"],
                                  "responses": {"200": _json({"type": "object"},
                                                             "OpenAPI 3.0")}}},
        "/v2": {"get": _op("server metadata", _json({
            "type": "object", "required": ["name", "version", "extensions"],
            "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                           "extensions": {"type": "array", "items": {"type": "string"}},
                           "image_version": {"type": "string"}}},
            "name, version, extensions; image_version on an appliance"))},
        "/v2/health/live": {"get": _op("liveness", _json({
            "type": "object", "properties": {"live": {"type": "boolean"}}}, "live"))},
        "/v2/health/ready": {"get": {"summary": "readiness", "tags": ["v2"],
                                     "responses": {"200": _json(_READY, "ready"),
                                                   "400": _json(_READY, "not ready")}}},
    }


def _repository_paths(model: Doc) -> Doc:
    index = _op("every model and its state",
                _json({"type": "array", "items": _MODEL_STATUS}, "the index"),
                errors=POST_ERRORS)
    index["requestBody"] = {"required": False, "content": {JSON: {"schema": {
        "type": "object", "properties": {"ready": {"type": "boolean"}}}}}}
    paths: Doc = {"/v2/repository/index": {"post": index}}
    for action in ("load", "unload"):
        op = _op(f"{action} a model (server.repository_control)",
                 _json(_MODEL_STATUS, "the model's state"),
                 errors=(*POST_ERRORS, 403, 404, 422), params=[model])
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": {
            "type": "object"}}}}
        paths[f"/v2/repository/models/{{model}}/{action}"] = {"post": op}
    return paths


def _model_paths(model: Doc, version: Doc) -> Doc:
    paths: Doc = {}
    for base, params in (("/v2/models/{model}", [model]),
                         ("/v2/models/{model}/versions/{version}", [model, version])):
        paths[base] = {"get": _op("model metadata", _json(_MODEL_METADATA, "metadata"),
                                  errors=(404,), params=params)}
        paths[base + "/ready"] = {"get": {
            "summary": "model readiness", "tags": ["v2"], "parameters": params,
            "responses": {"200": _json(_MODEL_READY, "ready"),
                          "400": _json(_MODEL_READY, "not ready"),
                          **_errors((404,))}}}
        ok = _json(_INFER_RESPONSE, "the outputs: JSON, or with binary_data_output the JSON "
                   "header (Inference-Header-Content-Length bytes) followed by raw tensors")
        ok["content"]["application/octet-stream"] = {"schema": {"type": "string",
                                                                "format": "binary"}}
        paths[base + "/infer"] = {"post": _op(
            "inference (Open Inference Protocol v2, JSON or binary tensors)", ok,
            body=_INFER_REQUEST, errors=(*POST_ERRORS, 404, 422, 504), params=params)}
    return paths


def _openai_paths(llms: list[str], embedders: list[str]) -> Doc:
    sse = {"text/event-stream": {"schema": {  # each event: a JSON chunk, or [DONE]
        "type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}}}
    paths: Doc = {"/v1/models": {"get": _op("every model served, with its kind", _json(
        _MODEL_LIST, "the list"), tag="openai")}}
    request = copy.deepcopy(_EMBEDDINGS_REQUEST)
    if embedders:
        request["properties"]["model"].update(example=embedders[0], enum=list(embedders))
    paths["/v1/embeddings"] = {"post": _op(
        "embeddings (OpenAI) from the embedding models", _json(_EMBEDDINGS, "the vectors"),
        body=request, openai=True, tag="openai", errors=(*POST_ERRORS, 404, 504))}
    for path, summary, request in (
            ("/v1/completions", "text completion (OpenAI)", _COMPLETION_REQUEST),
            ("/v1/chat/completions", "chat completion (OpenAI)", _CHAT_REQUEST)):
        ok = _json(_COMPLETION, "the completion (JSON), or server-sent events with stream")
        ok["content"].update(sse)
        request = copy.deepcopy(request)
        if llms:
            request["properties"]["model"].update(example=llms[0], enum=list(llms))
        paths[path] = {"post": _op(summary, ok, body=request, openai=True, tag="openai",
                                   errors=(*POST_ERRORS, 404, 504))}
    return paths


def _require_keys(doc: Doc) -> Doc:
    """Every operation but the probes needs ``Authorization: Bearer`` (401 without)."""
    doc["components"] = {"securitySchemes": {"bearer": _BEARER}}
    for path, ops in doc["paths"].items():
        if path in OPEN_PATHS:
            continue
        for op in ops.values():
            op["security"] = [{"bearer": []}]
            op["responses"]["401"] = _json(_UNAUTHORIZED, "no valid API key")
    return doc


def document(models: list[str] | None = None, llms: list[str] | None = None,
             versions: list[str] | None = None, embedders: list[str] | None = None,
             keys_required: bool = False) -> Doc:
    """The OpenAPI 3.0 document; ``models`` (all), ``llms`` (the language models),
    ``versions`` and ``embedders`` (the embedding models): the values served now, given as
    the parameters' (none: any string); ``keys_required``: the listener asks for API keys."""
    model = _path_param("model", models or [])
    version = _path_param("version", versions or [])
    doc: Doc = {
        "openapi": "3.0.3",
        "info": {"title": "LLM OS inference API", "version": __version__,
                 "description": "Open Inference Protocol v2 (tensor and embedding models), "
                                "OpenAI completions and chat (language models) and "
                                "embeddings (embedding models), health and metrics. Errors "
                                "name the field at fault."},
        "paths": {**_server_paths(), **_repository_paths(model), **_model_paths(model, version),
                  **_openai_paths(llms or [], embedders or [])},
    }
    return _require_keys(doc) if keys_required else doc


async def openapi(request: web.Request) -> web.Response:
    plane = request.app[DATAPLANE]
    index, cards = plane.index(), plane.catalog()
    return web.json_response(document([st.name for st in index],
                                      [c.name for c in cards if c.kind == "causal-lm"],
                                      sorted({st.version for st in index}),
                                      [c.name for c in cards if c.kind == "embedding"],
                                      request.app.get(KEYS_REQUIRED, False)))


def setup(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi)
