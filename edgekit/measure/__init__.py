"""Measuring an export on a board or the emulator: latency, correctness, per-layer profile
(bench.py)."""
