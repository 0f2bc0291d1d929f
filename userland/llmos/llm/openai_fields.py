"""The error of a malformed OpenAI request field (its own module so that every parser of
the OpenAI wire format can raise it without importing the others)."""

from __future__ import annotations

from llmos.errors import BadRequestError


class FieldError(BadRequestError):
    """A request field is missing or malformed."""

    def __init__(self, param: str, message: str, hint: str = "") -> None:
        super().__init__(f"{param}: {message}", hint or "see the OpenAI API reference", param)
