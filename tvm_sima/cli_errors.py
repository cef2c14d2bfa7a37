"""How the command line reports a failure: one line on stderr, never a traceback.

:class:`CliError` carries a message written for the user (``tvm-sima: error: <message>``, exit
status 1). Any other exception reaching the command line is a failure no check anticipated:
:func:`unexpected` turns it into one line too — its type, the first line of its message and the
command and model being run — and prints the traceback only when the environment variable
``TVM_SIMA_DEBUG`` is set (to anything but empty or ``0``).
"""

from __future__ import annotations

import os
import traceback

from . import messages

__all__ = ["DEBUG_ENV", "CliError", "debugging", "one_line", "unexpected"]

#: Set it (``TVM_SIMA_DEBUG=1``) to see the traceback of an unexpected error.
DEBUG_ENV = "TVM_SIMA_DEBUG"


class CliError(Exception):
    """An error for the user: printed as one line, exit status 1."""


def debugging() -> bool:
    """Whether :data:`DEBUG_ENV` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(err: BaseException) -> str:
    """An exception's message in one line, uncut (:func:`tvm_sima.messages.one_line`)."""
    return messages.one_line(err, limit=None, empty="(no message)")


def unexpected(err: BaseException, command: str = "", model: str = "") -> str:
    """The line for an error no check caught: ``Type: message (command model); set TVM_SIMA_DEBUG=1 ...``.

    With :data:`DEBUG_ENV` set, the traceback is printed (on stderr) first.
    """
    if debugging():
        traceback.print_exception(err)
    where = f" ({command} {model})" if command and model else ""
    hint = "" if debugging() else f"; set {DEBUG_ENV}=1 for the traceback"
    return f"{type(err).__name__}: {one_line(err)}{where}{hint}"
