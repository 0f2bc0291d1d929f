"""Causal language models: export to ONNX with a KV cache (build side), and serving them
with continuous batching (``engine``) behind the OpenAI API (``llmos.web.api.openai``).

Build side (torch, transformers, onnx): ``checkpoint``, ``onnx_graph``, ``compress``,
``prune``, ``export``, ``packing``. Serving side: ``model`` loads a pack; ``decoder`` runs
the graph over the slot caches (``kvcache``); ``engine`` schedules; ``sampling``,
``stopping``, ``detokenize``, ``chat``, ``tokenizer`` are its parts; ``metrics`` reports.
"""
