"""What each command does: ``run(args, context)``, one module a command, named as its parser side
in ``cli/commands``. These import the library (mxnet included) at their top, so ``cli.main``
imports a command's module here only after it has pinned the threads."""
