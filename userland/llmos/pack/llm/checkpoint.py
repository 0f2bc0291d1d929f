"""Reads a causal LM checkpoint (the only ``transformers``/``torch`` import of llm/; build side).

Two sources are understood: a Hugging Face-style folder (``config.json``, safetensors or
bin weights, ``tokenizer.json``) and a single GGUF file (dequantised by transformers).
A GGUF-loaded model cannot be saved as is, so the weights are moved into a fresh model
built from a plain config (no ``quantization_config``) and written as an ordinary folder;
that folder is the cache every later export starts from.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmos.errors import ModelLoadError

log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub


@dataclass(frozen=True)
class Checkpoint:
    """A causal LM's fp32 weights and everything needed to talk to it."""

    config: Mapping[str, Any]
    weights: Mapping[str, np.ndarray]
    tokenizer_json: bytes
    chat_template: str | None
    generation_config: Mapping[str, Any]


def _plain_config(config: Any) -> Any:
    from transformers import AutoConfig

    d = config.to_dict()
    d.pop("quantization_config", None)
    d.pop("_name_or_path", None)
    d["dtype"] = "float32"
    model_type = d.pop("model_type")
    return AutoConfig.for_model(model_type, **d)


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint into a Hugging Face folder at ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not gguf.is_file():
        raise ModelLoadError(f"GGUF file {gguf} does not exist", "pass an existing .gguf file")
    log.info("dequantising %s", gguf)
    with torch.inference_mode():
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                      dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        fresh = AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
            _plain_config(loaded.config), dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        fresh.generation_config = loaded.generation_config
    tmp = out_dir.with_name(out_dir.name + ".partial")
    fresh.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if tokenizer.chat_template and not (tmp / "chat_template.jinja").exists():
        (tmp / "chat_template.jinja").write_text(tokenizer.chat_template)
    tmp.replace(out_dir)
    return out_dir


def _chat_template(folder: Path) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        template = json.loads(cfg.read_text()).get("chat_template")
        return template if isinstance(template, str) else None
    return None


def read_folder(folder: Path) -> Checkpoint:
    """Load a Hugging Face-style folder as fp32 numpy weights plus tokenizer files."""
    import torch
    from transformers import AutoModelForCausalLM

    config_path = folder / "config.json"
    tokenizer_path = folder / "tokenizer.json"
    for needed in (config_path, tokenizer_path):
        if not needed.is_file():
            raise ModelLoadError(f"{folder} has no {needed.name}",
                                 "pass a Hugging Face-style model folder (or a .gguf file)")
    with torch.inference_mode():
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        weights = {k: v.detach().to(torch.float32).numpy().copy()
                   for k, v in model.state_dict().items()}
    gen_path = folder / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    return Checkpoint(
        config=json.loads(config_path.read_text()),
        weights=weights,
        tokenizer_json=tokenizer_path.read_bytes(),
        chat_template=_chat_template(folder),
        generation_config=generation,
    )


def read(source: Path, cache_dir: Path) -> Checkpoint:
    """A folder is read directly; a GGUF file is converted once into ``cache_dir``."""
    if source.is_dir():
        return read_folder(source)
    if source.suffix != ".gguf":
        raise ModelLoadError(f"{source} is neither a model folder nor a .gguf file",
                             "pass a Hugging Face-style folder or a GGUF file")
    folder = cache_dir / f"{source.stem}.hf"
    if not (folder / "config.json").is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        convert_gguf(source, folder)
    return read_folder(folder)
