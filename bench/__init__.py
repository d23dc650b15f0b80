"""Benchmarks: each module is a `python -m bench.NAME` script that prints a table and writes bench/results/*.json.

Shared helpers live in `bench.common` (support sampling, percentiles, results); real processes (redis-server,
`fewshot serve`) come from `harness`, which the tests use too.
"""
