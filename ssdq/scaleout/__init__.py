"""Scale-out: the same sweeps and evaluations, run serially here (the default) or as Ray tasks.

``engine.py`` runs trials (local or Ray, with per-worker core pinning, retries and a record of
where each ran); ``sharded_eval.py`` splits an evaluation into shards and scores the merged
detections once. The studies and the tuner keep their own search logic and only hand trials
to an engine.
"""
