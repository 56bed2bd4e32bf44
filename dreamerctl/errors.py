"""Errors that the CLI turns into one `error: ...` line and an exit code (SPEC §6)."""

from __future__ import annotations


class DreamerError(Exception):
    """A failure the user can act on. `exit_code` follows SPEC §6."""

    exit_code = 1


class UsageError(DreamerError):
    """Invalid usage, preset, field or task: exit 2."""

    exit_code = 2


class RunError(DreamerError):
    """Failure at run time (no checkpoint, unreadable file, ...): exit 1."""

    exit_code = 1


class Interrupted(DreamerError):
    """SIGINT or SIGTERM: the work was saved; exit 130."""

    exit_code = 130
