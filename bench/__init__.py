"""Benchmarks: deterministic order streams and the timing harnesses that replay them."""
