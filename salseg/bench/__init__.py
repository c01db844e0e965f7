"""Benchmarks: efficiency (params, FLOPs, latency); grids and robustness live beside it."""
