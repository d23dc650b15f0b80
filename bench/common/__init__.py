"""Helpers every benchmark shares: support sampling, percentiles, writing results."""
