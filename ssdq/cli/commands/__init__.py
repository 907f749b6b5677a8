"""The parser side of the commands, one module a command: ``NAME``, ``HELP``, ``PINS`` (whether
threads are pinned before it runs) and ``add_arguments(parser)``; what the command does,
``run(args, context)``, is in the module of the same name in ``cli/actions``. ``COMMANDS`` is the
table the parser is built from and dispatched through, in the order ``ssdq --help`` lists them.

These modules import only what the parser needs (``cli.flags``, the folders' ``options``
modules): building the parser must not load mxnet, numpy or cv2, since threads are not pinned
yet."""
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
                               score,
                               sensitivity,
                               study,
                               tune,
)

COMMANDS = (reproduce, data, convert, quantize, evaluate, score, bench, compare, sensitivity,
            tune, export, finetune, qat, study, prune, lowrank)
