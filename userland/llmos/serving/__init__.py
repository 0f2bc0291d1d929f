"""The serving core: v2 codec, per-model scheduling and batching, metrics, model backends."""
