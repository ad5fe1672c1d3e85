"""Errors a user can act on.

Every failure that reaches the user is a `SplatforgeError`: one sentence of what went wrong and one
of what to do about it. The CLI prints both and exits non-zero; the job service stores both.
"""

from __future__ import annotations


class SplatforgeError(Exception):
    """A failure with advice. `advice` says what the user should do next."""

    def __init__(self, message: str, advice: str = "", *, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.advice = advice
        self.exit_code = exit_code

    def to_dict(self) -> dict:
        return {"error": self.message, "advice": self.advice}

    def __str__(self) -> str:
        return f"{self.message}\n  -> {self.advice}" if self.advice else self.message


class InputError(SplatforgeError):
    """The input (a file, a folder, a capture) is not usable as given."""


class CaptureRejected(SplatforgeError):
    """The capture quality check predicts failure; nothing was sent to the GPU."""


class PoseError(SplatforgeError):
    """Camera poses could not be estimated."""


class TrainingError(SplatforgeError):
    """Training stopped; the last checkpoint is kept."""
