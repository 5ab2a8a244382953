"""The state-diff benchmark: `python -m loadtest.state` (see bench.py)."""
