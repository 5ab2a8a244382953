"""Benchmarks of the matchmaker."""
