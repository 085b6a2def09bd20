"""Calibration, prediction, diagnostics, results and the continual-VVUQ ledger."""

from .calibrate import ROLE_DETERMINISTICS, calibrate, clear_compile_cache, precompile
from .diagnostics import Diagnostics, Thresholds, compute_diagnostics
from .ledger import Entry, Ledger
from .predict import predict
from .results import TwinResult, load_result
from .smc import SMCOptions, smc_sample_stats

__all__ = [
    "ROLE_DETERMINISTICS", "calibrate", "clear_compile_cache", "precompile", "Diagnostics", "Thresholds",
    "compute_diagnostics", "Entry", "Ledger", "predict", "TwinResult", "load_result",
    "SMCOptions", "smc_sample_stats",
]
