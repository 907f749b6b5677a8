"""One module a command: ``NAME``, ``HELP``, ``PINS`` (whether threads are pinned before it
runs), ``add_arguments(parser)`` and ``run(args, context)``. ``COMMANDS`` is the table the
parser is built from and dispatched through, in the order ``ssdq --help`` lists them."""
from ssdq.cli.commands import (
                               bench,
                               compare,
                               convert,
                               data,
                               evaluate,
                               export,
                               finetune,
                               lowrank,
                               prune,
                               qat,
                               quantize,
                               reproduce,
                               sensitivity,
                               study,
                               tune,
)

COMMANDS = (reproduce, data, convert, quantize, evaluate, bench, compare, sensitivity, tune,
            export, finetune, qat, study, prune, lowrank)
