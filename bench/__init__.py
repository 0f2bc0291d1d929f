"""Side-by-side benchmarks of LLM OS against what users would pick instead (``make bench``)."""
