"""The base of errors caused by a user's inputs or environment: the CLI shows their message, not a traceback.

Every subclass's message says what went wrong, names the offending input, and says what to do next.
"""

from __future__ import annotations


class MedsafeError(Exception):
    """An error whose message is meant for the person running the pipeline."""


class StageFailed(MedsafeError):
    """A pipeline stage failed: names the stage, the cause, and what to do next."""

    def __init__(self, stage: str, cause: BaseException | str, hint: str = "") -> None:
        self.stage, self.cause = stage, cause
        super().__init__(f"stage '{stage}' failed: {cause}" + (f"\n  what to do: {hint}" if hint else ""))


class ProfileError(MedsafeError):
    """A profile or override that does not validate."""


class InputFileError(MedsafeError, ValueError):
    """A file the user gave cannot be read as what it should be: the message names the file and line."""
