"""Streaming assimilation: keep a twin's posterior and state current as data arrive.

* static parameters: :func:`smc_update` (reweight, adaptive tempering, systematic resampling,
  rejuvenation in unconstrained space by adapted kernels - :func:`rejuvenate`: independent
  Gaussian / mixture proposals, MALA, random walk - until the particles decorrelate, refit
  fallback) on a :class:`ParticlePosterior`, and the
  checkpointed, validated stream :class:`AssimilationRun`; :func:`assimilate` applies the update
  to a calibrated twin (its own PyMC model compiled as a vectorised likelihood);
* evolving states: :func:`kalman_filter`, :func:`ensemble_kalman_filter` (stochastic EnKF and
  ETKF with inflation) and :func:`particle_filter` on a :class:`StateSpaceModel`, with joint
  state-parameter estimation by state augmentation.
"""

from .filters import (
    StateSpaceModel,
    analysis_rmse,
    ensemble_kalman_filter,
    kalman_filter,
    particle_filter,
)
from .kernels import rejuvenate
from .smc import (
    MixingWarning,
    ParticleCollapseError,
    ParticlePosterior,
    UpdateReport,
    concat_data,
    smc_update,
)
from .targets import CallableModel, ParticleModel
from .stream import AssimilationRun, StreamDataError, batch_rng, validate_batch
from .twin_adapter import TwinAssimilation, TwinLogDensity, assimilate, twin_log_density
from .weights import effective_sample_size, normalize_log_weights, systematic_resample

__all__ = [
    "StateSpaceModel",
    "kalman_filter",
    "ensemble_kalman_filter",
    "particle_filter",
    "analysis_rmse",
    "ParticlePosterior",
    "UpdateReport",
    "ParticleCollapseError",
    "MixingWarning",
    "smc_update",
    "rejuvenate",
    "CallableModel",
    "ParticleModel",
    "concat_data",
    "AssimilationRun",
    "StreamDataError",
    "validate_batch",
    "batch_rng",
    "assimilate",
    "TwinAssimilation",
    "TwinLogDensity",
    "twin_log_density",
    "effective_sample_size",
    "normalize_log_weights",
    "systematic_resample",
]
