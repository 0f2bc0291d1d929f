"""LLM OS userland: the supervisor that serves sealed model packs from memory."""

__version__ = "0.1.0"
