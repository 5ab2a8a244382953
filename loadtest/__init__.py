"""Load tests and benchmarks (locust files, the fan-out benchmark)."""
