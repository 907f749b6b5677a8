"""Scale-out: the same sweeps and evaluations, run serially here (the default) or as Ray tasks.

``engine.py`` runs trials (local or Ray, with per-worker core pinning, retries and a record of
where each ran); ``sweep.py`` runs sweeps with stop rules in speculative waves whose outcome is
the serial loop's. The studies, the tuner and the sharded evaluation (``eval.sharded``) keep
their own logic and only hand trials to an engine.
"""
