"""The exception type users see, and the warnings ssdq gives about their data.

Both are printed by the CLI as single lines: ``ssdq: error: ...`` (exit status 2),
``ssdq: warning: ...`` and ``ssdq: note: ...``.
"""


class SsdqError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI catches it, prints ``ssdq: error: <message>`` and exits non-zero; anything else
    escaping is a bug in ssdq and keeps its traceback.
    """


class SsdqWarning(UserWarning):
    """An error the user chose to downgrade (``--allow-size-mismatch``): ``ssdq: warning: ...``.

    Library code emits it with ``warnings.warn``, so tests can catch it and the CLI prints it.
    """


class SsdqNote(SsdqWarning):
    """Something ssdq decided about the user's data that they should know: ``ssdq: note: ...``."""


def first_line(exc, limit=300):
    """The first meaningful line of an exception's message (MXNet's errors carry C++ stack
    traces after it), or the exception's type name when it has no message."""
    for line in str(exc).strip().splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ", "[bt]", "Stack")):
            return line[:limit]
    return type(exc).__name__
