"""Messages for users: an exception (or any text) as one line.

TVM's errors carry multi-line C++ tracebacks, and users' code raises whatever it likes; every place
that turns such a failure into a one-line error (the model readers, the dataset plugins, the
command line) takes the line from :func:`one_line`.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["one_line"]


def one_line(message: object, limit: Optional[int] = 400, empty: str = "") -> str:
    """``message`` as one line: its first non-empty line, or its last when it starts with a traceback.

    Parameters
    ----------
    message : object
        An exception or a text (``str(message)`` is read).
    limit : int, optional
        At most this many characters (the end cut to ``...``); None: no limit.
    empty : str
        What to return when ``message`` has no text.
    """
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return empty
    text = lines[-1] if lines[0].startswith("Traceback") and len(lines) > 1 else lines[0]
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
