"""Siar benchmarks (issue 6): figures as JSON, one object per scenario. See bench/README.md."""
