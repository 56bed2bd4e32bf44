"""Errors that the CLI turns into one `error: ...` line and an exit code (SPEC §6)."""

from __future__ import annotations

from typing import TypeVar


class DreamerError(Exception):
    """A failure the user can act on. `exit_code` follows SPEC §6.

    `shared` marks an error that every rank of a torchrun job raises together (a decision they
    took collectively): rank 0 alone prints it, so the job shows it once.
    """

    exit_code = 1
    shared = False


class UsageError(DreamerError):
    """Invalid usage, preset, field or task: exit 2."""

    exit_code = 2


class RunError(DreamerError):
    """Failure at run time (no checkpoint, unreadable file, ...): exit 1."""

    exit_code = 1


class Interrupted(DreamerError):
    """SIGINT or SIGTERM: the work was saved; exit 130."""

    exit_code = 130


E = TypeVar("E", bound=DreamerError)


def shared(error: E) -> E:
    """Mark `error` as raised by every rank at once; returns it, for `raise shared(...)`."""
    error.shared = True
    return error
