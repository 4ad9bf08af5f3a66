"""Measuring a model: held-out loss now; benchmarks and comparisons build on it."""
