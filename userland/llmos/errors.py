"""Domain errors. Each carries a message (what happened) and a hint (what to do).

They are raised by the core and mapped to HTTP statuses and exit codes exactly once,
at the edges (``llmos.web.errors`` and ``llmos.cli``).
"""

from __future__ import annotations


class LlmosError(Exception):
    """Base of every error a user may see."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (hint: {self.hint})" if self.hint else self.message


class ConfigError(LlmosError):
    """The configuration (file, flags, environment) is invalid."""


class PackFormatError(LlmosError):
    """A pack or sealed pack is not in a format this version understands."""


class TamperedError(PackFormatError):
    """Authentication failed: the sealed pack was edited, truncated, reordered or mixed."""


class KeyReleaseError(LlmosError):
    """The key-encryption key could not be obtained (TPM refused, file missing...)."""


class WrongKeyError(LlmosError):
    """The pack was sealed for a different key-encryption key than the one available."""


class ModelLoadError(LlmosError):
    """A runtime could not load a model from its pack."""


class PrepackedWeightsStillRead(ModelLoadError):
    """A runtime answered differently once the weights it was to hold prepacked were given
    back: its kernels on this CPU read them in place (onnxruntime's int8 and 4-bit kernels
    without AVX2 and FMA do not prepack). The loader builds the model again with them kept
    (``llmos.serving.loading``)."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} answers differently once its prepacked weights "
                         "are given back: the runtime still reads them",
                         f"set prepack = false for model {model!r}")


class BadRequestError(LlmosError):
    """The client sent something malformed (JSON, shape, datatype...); ``param`` names the
    field at fault when there is one (``messages[0].content``)."""

    def __init__(self, message: str, hint: str = "", param: str | None = None) -> None:
        super().__init__(message, hint)
        self.param = param


class NotFoundError(LlmosError):
    """Unknown model or version."""


class ForbiddenError(LlmosError):
    """The request is understood but this listener does not allow it (by configuration)."""


class ConflictError(LlmosError):
    """The request contradicts the model's state (its version already serves, an update is
    under way): nothing was changed."""


class NotReadyError(LlmosError):
    """The model exists but cannot serve now (loading, failed, unloaded, device gone)."""


class QueueFullError(LlmosError):
    """The model's bounded queue is full; retry later."""

    def __init__(self, message: str, hint: str = "", retry_after_s: float = 1.0) -> None:
        super().__init__(message, hint)
        self.retry_after_s = retry_after_s


class RequestTimeoutError(LlmosError):
    """The client did not send its request in time (its body trickled, say): 408."""


class InferenceTimeoutError(LlmosError):
    """A request did not complete within its deadline."""


class PayloadTooLargeError(LlmosError):
    """The request body exceeds the configured limit."""
