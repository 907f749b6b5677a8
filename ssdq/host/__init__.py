"""The machine: CPU lists and NUMA topology (``topology``), pinning OpenMP threads before mxnet
loads (``cpus``), memory policy without numactl (``mempolicy``), and the environment record every
report carries (``environment``)."""
