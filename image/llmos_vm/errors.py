"""Errors of the VM tooling: what happened, and what to do (llmos's error convention)."""

from __future__ import annotations

from llmos.errors import LlmosError


class VmError(LlmosError):
    """The VM could not be prepared, started, reached or stopped."""


class BootTimeout(VmError):
    """The guest did not reach an expected state in time (message ends with the console tail)."""
