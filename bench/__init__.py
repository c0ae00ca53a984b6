"""Benchmarks of qrevents against the limit of its stack and against flask-sse (BENCHMARKS.md)."""
