"""Benchmarks and evaluations, run as modules (``uv run python -m benchmarks.<name>``)."""
