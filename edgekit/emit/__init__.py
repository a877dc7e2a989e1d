"""Emission: a lowered Program as C (codegen.py + templates/) and its report (report.py)."""
