"""Service processes the benchmarks register on the runtime (run as ``python -m <module>``)."""
