"""Exit codes and the one error type of the command line, shared by all of its modules.

Every module of :mod:`lr_widget.cli` raises :class:`CommandError`; only
:func:`lr_widget.cli.main.main` catches it, prints it in one line and returns its exit code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_SWEEP_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure reported in one line on stderr, ending the command with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def describe_error(error: BaseException) -> str:
    """``"ValueError: the message"``: an exception's type and message, for one-line errors."""
    return f"{type(error).__name__}: {error}"
