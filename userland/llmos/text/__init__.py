"""Text handling shared by the runtimes (tokenizers behind a small adapter)."""
