"""What the command line needs of ``scaleout/`` without loading it: where a command's trials
run (``ScaleoutOptions``; ``engine.make_engine`` makes the engine they name)."""
import dataclasses

from ssdq.options import Options, option


@dataclasses.dataclass
class ScaleoutOptions(Options):
    """Where a command's trials run: here one after another, or as Ray tasks."""

    ray: str = option(None, "run trials as Ray tasks: alone, a Ray started on this machine; with "
                      "an address (auto, HOST:PORT), a cluster started with `ray start`",
                      nargs="?", const="local", metavar="ADDRESS")
    cpus_per_task: int = option(1, "CPUs (pinned cores and OpenMP threads) each Ray task gets")
