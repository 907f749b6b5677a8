"""The one exception type users see: its message is printed as a single line by the CLI."""


class SsdqError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI catches it, prints ``ssdq: error: <message>`` and exits non-zero; anything else
    escaping is a bug in ssdq and keeps its traceback.
    """
