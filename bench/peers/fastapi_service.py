"""The service a user would write: FastAPI + uvicorn + onnxruntime, speaking the v2 infer call.

Run: ``BENCH_MODEL_DIR=FOLDER uvicorn bench.peers.fastapi_service:app``. The endpoint is a
plain ``def``, so FastAPI runs it in its thread pool and requests overlap, as its docs
recommend for blocking work. It accepts the same request body as LLM OS and MLServer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from bench.peers.embedder import Embedder

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "minilm")


class RequestInput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class InferenceRequest(BaseModel):
    inputs: list[RequestInput]
    id: str | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferenceResponse(BaseModel):
    model_name: str
    outputs: list[ResponseOutput]
    id: str | None = None


app = FastAPI()
embedder = Embedder(Path(os.environ["BENCH_MODEL_DIR"]))


@app.get("/v2/health/ready")  # type: ignore[untyped-decorator]
def ready() -> dict[str, bool]:
    return {"ready": True}


@app.get("/v2/models/{model}/ready")  # type: ignore[untyped-decorator]
def model_ready(model: str) -> dict[str, bool]:
    if model != MODEL_NAME:
        raise HTTPException(status_code=404, detail=f"unknown model {model}")
    return {"ready": True}


@app.post("/v2/models/{model}/infer")  # type: ignore[untyped-decorator]
def infer(model: str, request: InferenceRequest) -> InferenceResponse:
    if model != MODEL_NAME:
        raise HTTPException(status_code=404, detail=f"unknown model {model}")
    texts = [str(x) for x in request.inputs[0].data]
    vectors = embedder.embed(texts)
    return InferenceResponse(
        model_name=model, id=request.id,
        outputs=[ResponseOutput(name="embedding", datatype="FP32", shape=list(vectors.shape),
                                data=vectors.ravel().tolist())])
