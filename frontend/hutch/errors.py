"""Errors shown to users, and the exit codes that go with them."""

from __future__ import annotations

import enum


@enum.unique
class ExitCode(enum.IntEnum):
    """Exit codes of the hutch CLI, the same as Docker's."""

    OK = 0
    HUTCH_ERROR = 125  # hutch itself failed or the input was invalid
    CANNOT_EXECUTE = 126  # the container's program exists but cannot run
    NOT_FOUND = 127  # the container's program does not exist


class HutchError(Exception):
    """An error for the user: one line that names what failed and what to do."""

    def __init__(self, message: str, code: int = ExitCode.HUTCH_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message
