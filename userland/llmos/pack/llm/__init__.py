"""The build side of causal language models, and their pack format.

Build (torch, transformers, onnx; never on the appliance): ``checkpoint`` reads the
weights, ``prune`` and ``compress`` (``blockquant``: the block grids) shrink them,
``onnx_graph`` builds the decoder graph with its KV cache, ``export`` runs the steps,
``packing`` makes the pack. Format, read by the serving side too (``llmos.llm``):
``architecture`` (the model's shape) and ``packinfo`` (what a causal-lm pack says about
itself in its manifest).
"""
