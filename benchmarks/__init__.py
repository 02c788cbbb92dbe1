"""Glimpse's performance harness: run `python benchmarks/run.py` (see benchmarks/README.md)."""
