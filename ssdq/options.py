"""Settings that travel together, as dataclasses the library takes and the command line reads.

A library entry point takes an options object (``CalibOptions``, ``DataOptions``, ...) instead of
a dozen keyword arguments. Each field is declared once, with its default and its help text
(``option``); ``ssdq.cli.flags.add_options`` turns the fields into flags (``--calib-mode`` for
``calib_mode``) whose defaults are the fields', and ``Options.from_args`` reads the parsed flags
back into the object. So a default is written in one place, and a flag exists only where a field
does, which the library reads.

Each folder keeps its options classes, and the constants their defaults need, in its own
``options`` module, which imports nothing heavy: the parser reads them before threads are
pinned, and the library imports them from there.
"""
import dataclasses

from ssdq.errors import SsdqError


def option(default, help, **cli):
    """A dataclass field with its help text and argparse settings (``choices``, ``nargs``,
    ``metavar``, ``type``, ``action``, ``flag``: the flag's name when it is not the field's)."""
    metadata = dict(cli, help=help)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class Options:
    """Base of the options dataclasses: building from parsed flags, replacing fields."""

    @classmethod
    def from_args(cls, args, **overrides):
        """The options the parsed ``args`` hold (fields a command does not offer keep their
        defaults); ``overrides`` set fields directly."""
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
                  if hasattr(args, f.name)}
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """The settings as plain data (for the JSON a run writes)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def at_least(holder, *names, minimum=1):
    """A one-line error naming the flag if a count of ``holder`` (options, or parsed flags) is
    below ``minimum``; None means "not given" and passes."""
    for name in names:
        value = getattr(holder, name, None)
        if value is not None and value < minimum:
            raise SsdqError("--%s must be %s" % (name.replace("_", "-"), "at least %d" % minimum
                                                 if minimum else "0 or more"))


def _plain(value):
    if isinstance(value, Options):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return value
