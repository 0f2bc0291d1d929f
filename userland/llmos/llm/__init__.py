"""Causal language models, serving side: continuous batching (``engine``) behind the OpenAI
API (``llmos.web.api.openai``, through ``llmos.dataplane``).

``model`` loads a pack; ``decoder`` runs the graph over the slot caches (``kvcache``);
``engine`` schedules; ``sampling``, ``stopping``, ``detokenize``, ``chat`` are its parts
(the tokenizer is ``llmos.text.tokenizer``); ``metrics`` reports; ``backend`` is what the
registry calls to load a ``causal-lm`` pack. The build side and the pack format are in
``llmos.pack.llm``.
"""
