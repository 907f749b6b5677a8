"""The command line: ``main`` (parse, pin threads, dispatch through the command table), ``flags``
(every flag defined once) and ``commands`` (one module a command)."""
