"""Benchmarks of vvuq_twin, run by ``python -m benchmarks [--quick] [NAME ...]``."""
