"""Subcommands of the ``llmos`` CLI: each module has ``register(subparsers)``.

``register`` adds its parser and sets ``func`` (``args -> int`` exit status).
"""
