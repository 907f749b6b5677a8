"""What the command line needs of ``bench/`` without loading MXNet: the precisions, scopes and
batch sizes ``harness`` times, and the presets of the multi-instance benchmark."""

PRECISIONS = ("fp32", "fp32_unfused", "bf16", "int8")
SCOPES = ("network", "end_to_end", "end_to_end_gluoncv", "eval_loop")
DEFAULT_BATCH_SIZES = (1, 8, 32)
MODES = ("latency", "throughput")  # multi-instance presets (``multi_instance.plan_instances``)
