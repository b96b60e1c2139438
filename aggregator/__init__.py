"""Aggregator: robust aggregation, outlier decisions, contribution scores (pure functions, no I/O)."""
