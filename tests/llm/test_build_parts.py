"""Pure parts of the export and the cache: config parsing, pruning, slot moves, templates."""

from __future__ import annotations

import numpy as np
import pytest

from llmos.errors import BadRequestError, ModelLoadError
from llmos.llm.chat import ChatTemplate, Message
from llmos.llm.kvcache import CacheLayout, KVCache
from llmos.pack.llm.architecture import spec_from_config
from llmos.pack.llm.packinfo import LLMInfo, eos_ids
from llmos.pack.llm.prune import magnitude_prune, sparsity_of

SMOLLM2 = {"model_type": "llama", "vocab_size": 49152, "hidden_size": 576,
           "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
           "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "max_position_embeddings": 8192,
           "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"},
           "tie_word_embeddings": True, "eos_token_id": 2}


def test_llama_config_becomes_a_decoder_spec() -> None:
    spec = spec_from_config(SMOLLM2)
    assert (spec.num_layers, spec.num_heads, spec.num_kv_heads, spec.head_dim) == (30, 9, 3, 64)
    assert (spec.rope_theta, spec.tie_word_embeddings, spec.attention_bias) == \
        (100000.0, True, False)
    assert spec.kv_bytes_per_token == 2 * 30 * 3 * 64 * 4
    info = LLMInfo(spec, 2048, (2,), "<|im_start|>", "<|im_end|>")
    assert LLMInfo.from_dict(info.to_dict()) == info


@pytest.mark.parametrize("change", [
    {"model_type": "gpt2"},
    {"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}},
    {"hidden_act": "gelu"},
])
def test_unsupported_architectures_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ModelLoadError):
        spec_from_config({**SMOLLM2, **change})


def test_eos_ids_merge_generation_and_model_config() -> None:
    assert eos_ids({"eos_token_id": [2, 7]}, {"eos_token_id": 2}) == (2, 7)
    assert eos_ids({}, {"eos_token_id": 0}) == (0,)


def test_magnitude_pruning_zeroes_the_smallest_projection_weights() -> None:
    rng = np.random.default_rng(0)
    weights = {"model.layers.0.mlp.up_proj.weight": rng.normal(size=(64, 32)).astype(np.float32),
               "model.layers.0.self_attn.q_proj.weight": rng.normal(size=(32, 32)).astype(
                   np.float32),
               "model.embed_tokens.weight": rng.normal(size=(10, 32)).astype(np.float32)}
    pruned = magnitude_prune(weights, 0.3)
    assert sparsity_of(pruned) == pytest.approx(0.3, abs=0.01)
    assert np.array_equal(pruned["model.embed_tokens.weight"], weights["model.embed_tokens.weight"])
    up = pruned["model.layers.0.mlp.up_proj.weight"]
    kept = np.abs(weights["model.layers.0.mlp.up_proj.weight"])[up != 0]
    assert kept.min() >= np.abs(weights["model.layers.0.mlp.up_proj.weight"])[up == 0].max()


def test_moving_a_slot_copies_only_its_tokens() -> None:
    cache = KVCache(CacheLayout(slots=3, capacity=8, num_layers=2, kv_heads=1, head_dim=2))
    for _, _, a in cache.arrays():
        a[2, :, :5] = 7.0
        a[0, :, :] = 1.0
    cache.move(2, 0, 5)
    for _, _, a in cache.arrays():
        assert (a[0, :, :5] == 7.0).all() and (a[0, :, 5:] == 1.0).all()


def test_chat_template_renders_and_refuses_through_raise_exception() -> None:
    template = ChatTemplate(
        "{% for m in messages %}{% if m.role == 'tool' %}{{ raise_exception('no tools') }}"
        "{% endif %}<{{ m.role }}>{{ m.content }}{{ eos_token }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}", {"eos_token": "</s>"})
    assert template.render([Message("user", "hi")]) == "<user>hi</s><assistant>"
    with pytest.raises(BadRequestError, match="no tools"):
        template.render([Message("tool", "x")])
    with pytest.raises(ModelLoadError):
        ChatTemplate("{% for %}")
